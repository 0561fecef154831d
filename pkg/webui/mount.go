package webui

import (
	"context"
	"net/http"
	"path/filepath"
	"sort"

	"github.com/image-builder-action/image-builder-action/pkg/compose"
	"github.com/image-builder-action/image-builder-action/pkg/serve"
)

// Mount is the page as ibuild serve mounts it, at "/" of its HTTP
// listener: the compose service's composes, each owner's blueprints
// under DIR/webui/blueprints, logins with the tokens auth checks (the
// API's). uploads are the upload targets the Build page offers.
func Mount(auth Authenticator, uploads map[string]compose.UploadTarget) serve.Mount {
	return func(ctx context.Context, env *serve.Env) (string, http.Handler, error) {
		var names []string
		for n := range uploads {
			names = append(names, n)
		}
		sort.Strings(names)
		s, err := New(Options{
			Auth:        auth,
			Blueprints:  NewOwnerBlueprints(filepath.Join(env.Dir, "webui", "blueprints")),
			SessionFile: filepath.Join(env.Dir, "webui", "sessions.json"),
			Composes:    &ServiceComposes{Service: env.Compose, Uploads: uploads},
			Defs:        env.Compose.Defs(),
			Uploads:     names,
			PublishTo:   env.Compose.Config().Publish.Repositories,
			Sign:        env.Compose.Config().Publish.CanSign(),
			Packages:    ServicePackages(env.Compose),
			Logger:      env.Logger,
			Done:        ctx.Done(),
		})
		if err != nil {
			return "", nil, err
		}
		return "/", s, nil
	}
}
