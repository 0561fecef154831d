package lock

import (
	"context"
	"strings"

	"github.com/image-builder-action/image-builder-action/pkg/blueprint"
	"github.com/image-builder-action/image-builder-action/pkg/distro"
)

// Precheck refuses what Lock would refuse in bp before it resolves a
// package: what the distro cannot honour, by field name, and every
// customization checked by the stage it becomes. It is for front ends
// that check a blueprint as it is edited (the web page), so it reads and
// fetches nothing: files and repository keys named by URI are taken as
// given, and only Lock finds out whether they can be read. The distro is
// WithDistro's, else the blueprint's; with neither there is nothing to
// check against and Precheck returns nil.
func Precheck(ctx context.Context, bp *blueprint.Blueprint, opts ...Option) error {
	o := options{}
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return err
		}
	}
	if o.defs == nil {
		d, err := distro.Load()
		if err != nil {
			return err
		}
		o.defs = d
	}
	name := o.distro
	if name == "" {
		name = bp.Distro
	}
	if name == "" {
		return nil
	}
	d, err := o.defs.Distro(name)
	if err != nil {
		return bp.Errorf("distro", "%v", err)
	}
	o.offline = true
	_, _, err = customizationsWith(ctx, withoutFetches(bp), d, &o)
	return err
}

// withoutFetches copies bp with the content it would fetch left out:
// the positions of what remains stay those of the file.
func withoutFetches(bp *blueprint.Blueprint) *blueprint.Blueprint {
	if bp.Customizations == nil {
		return bp
	}
	cp := *bp
	cu := *bp.Customizations
	cp.Customizations = &cu
	cu.Files = append([]blueprint.FileCustomization(nil), cu.Files...)
	for i := range cu.Files {
		cu.Files[i].URI = ""
	}
	cu.Repositories = append([]blueprint.RepositoryCustomization(nil), cu.Repositories...)
	for i, r := range cu.Repositories {
		var keys []string
		for _, k := range r.GPGKeys {
			if strings.HasPrefix(strings.TrimSpace(k), "-----BEGIN PGP PUBLIC KEY BLOCK-----") {
				keys = append(keys, k)
			}
		}
		cu.Repositories[i].GPGKeys = keys
	}
	return &cp
}
