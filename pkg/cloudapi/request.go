package cloudapi

import (
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strings"

	"github.com/image-builder-action/image-builder-action/pkg/blueprint"
	"github.com/image-builder-action/image-builder-action/pkg/distro"
	"github.com/image-builder-action/image-builder-action/pkg/upload"
)

// submission is a compose request in ibuild's terms, checked: what the
// compose service is asked to lock, build and upload.
type submission struct {
	Distro string
	// Blueprint is the blueprint checked; BlueprintJSON its text, which
	// the compose service stores and locks.
	Blueprint     *blueprint.Blueprint
	BlueprintJSON []byte
	// Repositories are resolved against besides the distribution's
	// suites.
	Repositories []blueprint.RepositoryCustomization
	Images       []imageSpec
}

type imageSpec struct {
	Arch, Type string
	// Size is the image's size in bytes; 0 is the type's default.
	Size   uint64
	Upload *uploadSpec
}

type uploadSpec struct {
	Target  string
	Options upload.Options
}

// composerTypes maps composer's image type names to ibuild's.
var composerTypes = map[ImageTypes]string{
	"guest-image": "qcow2",
	"aws":         "ami",
	"gcp":         "gce",
	"azure":       "vhd",
	"vsphere":     "vmdk",
	"vsphere-ova": "ova",
	"wsl":         "wsl",
	"minimal-raw": "raw",
}

// defaultTarget is composer's upload target for an image type's
// upload_options: the type's cloud, else an S3 object.
var defaultTarget = map[string]UploadTypes{"ami": "aws", "gce": "gcp", "vhd": "azure"}

// converter turns requests into submissions against the server's
// configuration.
type converter struct {
	defs *distro.Defs
	// upload holds the operator's settings (buckets, endpoints), which
	// requests cannot change but add to.
	uploadDefaults upload.Options
	// schemes are the URL schemes repositories and keys may use.
	schemes []string
	// newTarget checks upload options (upload.New by default).
	newTarget func(string, upload.Options) (upload.Target, error)
}

// v2 converts composer's ComposeRequest.
func (c *converter) v2(req *ComposeRequest) (*submission, error) {
	var irs []ImageRequest
	base := "image_requests"
	switch {
	case req.ImageRequest != nil && req.ImageRequests != nil:
		return nil, badField("image_request", "give image_request or image_requests, not both")
	case req.ImageRequest != nil:
		irs, base = []ImageRequest{*req.ImageRequest}, "image_request"
	case req.ImageRequests != nil:
		irs = *req.ImageRequests
	default:
		return nil, badField("image_requests", "no image requested: give image_request or image_requests")
	}
	sub, d, err := c.start(req.Distribution)
	if err != nil {
		return nil, err
	}
	var repos *[]Repository
	nameFields := make([]string, len(irs))
	for i, ir := range irs {
		field := base
		if base == "image_requests" {
			field = fmt.Sprintf("%s[%d]", base, i)
		}
		img, err := c.image(d, field, string(ir.Architecture), ir.ImageType, ir.Size)
		if err != nil {
			return nil, err
		}
		var targets []UploadTarget
		if ir.UploadTargets != nil {
			targets = *ir.UploadTargets
		}
		if ir.UploadOptions != nil {
			t, ok := defaultTarget[img.Type]
			if !ok {
				t = "aws.s3"
			}
			targets = append(targets, UploadTarget{Type: t, UploadOptions: *ir.UploadOptions})
		}
		if len(targets) > 1 {
			return nil, badField(field+".upload_targets", "one upload target per image request")
		}
		if len(targets) == 1 {
			optField := field + ".upload_options"
			if ir.UploadTargets != nil {
				optField = field + ".upload_targets[0].upload_options"
			}
			if img.Upload, err = c.upload(optField, img.Type, targets[0].Type, targets[0].UploadOptions); err != nil {
				return nil, err
			}
			nameFields[i] = optField + ".image_name"
		}
		sub.Images = append(sub.Images, img)
		// One compose is one lockfile, resolved against one set of
		// suites.
		if i == 0 {
			repos = ir.Repositories
		} else if !sameRepos(repos, ir.Repositories) {
			return nil, badField(field+".repositories", "every image request of a compose must name the same repositories (a compose is locked once)")
		}
	}
	if err := c.uniqueNames(sub.Images, nameFields); err != nil {
		return nil, err
	}
	if repos != nil {
		field := base + ".repositories"
		if base == "image_requests" {
			field = base + "[0].repositories"
		}
		if sub.Repositories, err = c.repositories(field, *repos); err != nil {
			return nil, err
		}
	}
	switch {
	case req.Blueprint != nil:
		sub.Blueprint, sub.BlueprintJSON, err = c.blueprint(*req.Blueprint)
	default:
		sub.Blueprint, sub.BlueprintJSON, err = c.customizations(req.Customizations, "compose", "")
	}
	if err != nil {
		return nil, err
	}
	return sub, nil
}

// v1 converts the hosted image builder's ComposeRequest.
func (c *converter) v1(req *ComposeRequestV1) (*submission, error) {
	sub, d, err := c.start(req.Distribution)
	if err != nil {
		return nil, err
	}
	var nameFields []string
	for i, ir := range req.ImageRequests {
		field := fmt.Sprintf("image_requests[%d]", i)
		img, err := c.image(d, field, string(ir.Architecture), ir.ImageType, ir.Size)
		if err != nil {
			return nil, err
		}
		if img.Upload, err = c.upload(field+".upload_request.options", img.Type, ir.UploadRequest.Type, ir.UploadRequest.Options); err != nil {
			return nil, err
		}
		sub.Images = append(sub.Images, img)
		nameFields = append(nameFields, field+".upload_request.options.image_name")
	}
	if err := c.uniqueNames(sub.Images, nameFields); err != nil {
		return nil, err
	}
	name := "compose"
	if req.ImageName != nil && *req.ImageName != "" {
		name = *req.ImageName
	}
	if sub.Blueprint, sub.BlueprintJSON, err = c.customizations(req.Customizations, name, deref(req.ImageDescription)); err != nil {
		return nil, err
	}
	return sub, nil
}

func (c *converter) start(name string) (*submission, *distro.Distro, error) {
	d, err := c.defs.Distro(name)
	if err != nil {
		return nil, nil, &apiError{Status: 400, Code: codeDistribution, Field: "distribution",
			Msg: fmt.Sprintf("unsupported distribution %q: want one of %s", name, strings.Join(c.defs.DistroNames(), ", "))}
	}
	return &submission{Distro: d.Name}, d, nil
}

func (c *converter) image(d *distro.Distro, field, arch string, typ ImageTypes, size *int64) (imageSpec, error) {
	if _, err := d.Arch(arch); err != nil {
		return imageSpec{}, &apiError{Status: 400, Code: codeArch, Field: field + ".architecture",
			Msg: fmt.Sprintf("%s has no architecture %q: want one of %s", d.Name, arch, strings.Join(d.ArchNames(), ", "))}
	}
	name, ok := composerTypes[typ]
	if !ok {
		name = string(typ)
	}
	if _, err := c.defs.Type(name); err != nil {
		return imageSpec{}, &apiError{Status: 400, Code: codeImageType, Field: field + ".image_type",
			Msg: fmt.Sprintf("unsupported image type %q: want one of %s", typ, strings.Join(imageTypeNames(c.defs), ", "))}
	}
	img := imageSpec{Arch: arch, Type: name}
	if size != nil {
		img.Size = uint64(*size)
	}
	return img, nil
}

// imageTypeNames are the names a request may use: composer's that map to
// a type of defs, then defs' own.
func imageTypeNames(defs *distro.Defs) []string {
	var out []string
	for k, v := range composerTypes {
		if _, err := defs.Type(v); err == nil {
			out = append(out, string(k))
		}
	}
	slices.Sort(out)
	return append(out, defs.TypeNames()...)
}

// upload turns a target's options into upload.Options on top of the
// operator's, refusing what ibuild cannot honour, and checks them as the
// target will.
func (c *converter) upload(field, imageType string, target UploadTypes, o UploadOptions) (*uploadSpec, error) {
	opts := c.uploadDefaults
	refuse := func(name, why string) error {
		return badField(field+"."+name, why)
	}
	if o.ImageName != nil {
		// An image of that name made from another image is not
		// overwritten: the upload fails.
		if err := upload.CheckImageName(string(target), *o.ImageName); err != nil {
			return nil, refuse("image_name", err.Error())
		}
		opts.ImageName = *o.ImageName
	}
	if o.SnapshotName != nil {
		if err := upload.CheckSnapshotName(string(target), *o.SnapshotName); err != nil {
			return nil, refuse("snapshot_name", err.Error())
		}
		opts.SnapshotName = *o.SnapshotName
	}
	if o.Region != nil {
		opts.Region = *o.Region
	}
	if o.Public != nil {
		if target != "aws.s3" {
			return nil, refuse("public", "only aws.s3 takes public")
		}
		opts.Public = *o.Public
	}
	if o.ShareWithAccounts != nil {
		if target != "aws" {
			return nil, refuse("share_with_accounts", "only aws takes share_with_accounts here")
		}
		opts.ShareWithAccounts = *o.ShareWithAccounts
	}
	if o.Bucket != nil {
		if target != "gcp" {
			return nil, refuse("bucket", "the bucket is the server's (ibuild serve's upload settings); only gcp takes one in the request")
		}
		opts.Bucket = *o.Bucket
	}
	for name, v := range map[string]*string{"subscription_id": o.SubscriptionId, "resource_group": o.ResourceGroup, "location": o.Location, "tenant_id": o.TenantId} {
		if v != nil && target != "azure" {
			return nil, refuse(name, "only azure takes "+name)
		}
	}
	if o.SubscriptionId != nil {
		opts.SubscriptionID = *o.SubscriptionId
	}
	if o.ResourceGroup != nil {
		opts.ResourceGroup = *o.ResourceGroup
	}
	if o.Location != nil {
		opts.Location = *o.Location
	}
	if o.HyperVGeneration != nil {
		if target != "azure" {
			return nil, refuse("hyper_v_generation", "only azure takes hyper_v_generation")
		}
		opts.HyperVGeneration = string(*o.HyperVGeneration)
	}
	mk := c.newTarget
	if mk == nil {
		mk = upload.New
	}
	t, err := mk(string(target), opts)
	if err != nil {
		return nil, &apiError{Status: 400, Code: codeUpload, Field: field, Msg: err.Error()}
	}
	if !t.Accepts(imageType) {
		return nil, &apiError{Status: 400, Code: codeUpload, Field: field,
			Msg: fmt.Sprintf("upload target %s does not take %s images", target, imageType)}
	}
	return &uploadSpec{Target: string(target), Options: opts}, nil
}

// uniqueNames refuses two images of one compose that would upload under
// one name the user chose: their uploads run concurrently (each image is a
// build of its own, often on another architecture's queue), so one would
// overwrite the other's object, or its image would get the other's bytes;
// one after the other, the second would fail only after its whole build.
// A name is the target's resource: an aws AMI's is per region, an azure
// image's per resource group, an aws.s3 object's key also takes the file's
// extension. fields[i] names images[i]'s image_name.
func (c *converter) uniqueNames(images []imageSpec, fields []string) error {
	seen := map[string]int{}
	for i, img := range images {
		u := img.Upload
		if u == nil || u.Options.ImageName == "" {
			continue
		}
		key := u.Target + "\x00" + u.Options.ImageName
		switch u.Target {
		case "aws.s3":
			if t, err := c.defs.Type(img.Type); err == nil {
				key += upload.FileExt(t.Filename)
			}
		case "aws":
			key += "\x00" + u.Options.Region
		case "azure":
			key += "\x00" + u.Options.SubscriptionID + "\x00" + u.Options.ResourceGroup
		}
		if j, ok := seen[key]; ok {
			return badField(fields[i], fmt.Sprintf("%q is also the image_name of %s on %s: two images of one compose cannot upload under one name",
				u.Options.ImageName, strings.TrimSuffix(fields[j], ".image_name"), u.Target))
		}
		seen[key] = i
	}
	return nil
}

func sameRepos(a, b *[]Repository) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return string(ja) == string(jb)
}

// checkURL refuses a URL whose scheme the server does not allow: by
// default only http(s), so a file:// repository cannot make the server
// read its own disk.
func (c *converter) checkURL(field, raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return badField(field, fmt.Sprintf("%q is not a URL: %v", raw, err))
	}
	s := strings.ToLower(u.Scheme)
	if s == "http" || s == "https" || s != "" && slices.Contains(c.schemes, s) {
		if u.Host == "" && s != "file" {
			return badField(field, fmt.Sprintf("%q has no host", raw))
		}
		return nil
	}
	allowed := append([]string{"http", "https"}, c.schemes...)
	return &apiError{Status: 400, Code: codeRepository, Field: field,
		Msg: fmt.Sprintf("%q: URL scheme %q is not allowed (want %s)", raw, u.Scheme, strings.Join(allowed, ", "))}
}

const armorHeader = "-----BEGIN PGP PUBLIC KEY BLOCK-----"

// repositories turns composer's image request repositories into
// blueprint repositories that the compose resolves against (added to the
// distribution's suites, not replacing them: the base system comes from
// the distribution's own). Each base URL is used with the suites given
// (default the distribution's codename) and the components (default the
// distribution's), verified by the key given inline or the
// distribution's keyring.
func (c *converter) repositories(field string, repos []Repository) ([]blueprint.RepositoryCustomization, error) {
	var out []blueprint.RepositoryCustomization
	for i, r := range repos {
		f := fmt.Sprintf("%s[%d]", field, i)
		switch {
		case r.Mirrorlist != nil || r.Metalink != nil:
			return nil, &apiError{Status: 400, Code: codeRepository, Field: f, Msg: "Debian repositories need a baseurl (mirrorlist and metalink are RPM-only)"}
		case r.Baseurl == nil:
			return nil, &apiError{Status: 400, Code: codeRepository, Field: f + ".baseurl", Msg: "a repository needs a baseurl"}
		case r.CheckGpg != nil && !*r.CheckGpg || r.CheckRepoGpg != nil && !*r.CheckRepoGpg:
			return nil, &apiError{Status: 400, Code: codeRepository, Field: f + ".check_gpg", Msg: "unsigned repositories are refused: every InRelease is verified"}
		case r.Rhsm != nil && *r.Rhsm:
			return nil, &apiError{Status: 400, Code: codeRepository, Field: f + ".rhsm", Msg: "Red Hat subscriptions do not apply to Debian repositories"}
		case r.PackageSets != nil:
			return nil, &apiError{Status: 400, Code: codeRepository, Field: f + ".package_sets", Msg: "not supported: the build root and the image resolve against the same suites"}
		case r.IgnoreSsl != nil && *r.IgnoreSsl:
			return nil, &apiError{Status: 400, Code: codeRepository, Field: f + ".ignore_ssl", Msg: "not supported: TLS is checked (packages are verified by their InRelease signature as well)"}
		}
		if err := c.checkURL(f+".baseurl", *r.Baseurl); err != nil {
			return nil, err
		}
		rc := blueprint.RepositoryCustomization{ID: fmt.Sprintf("image-request-%d", i), BaseURLs: []string{*r.Baseurl}, InstallFrom: true}
		if r.Gpgkey != nil {
			if !strings.HasPrefix(strings.TrimSpace(*r.Gpgkey), armorHeader) {
				return nil, &apiError{Status: 400, Code: codeRepository, Field: f + ".gpgkey", Msg: "give the key itself, ASCII-armored"}
			}
			rc.GPGKeys = []string{strings.TrimSpace(*r.Gpgkey)}
		}
		if r.Suites != nil {
			rc.Suites = *r.Suites
		}
		if r.Components != nil {
			rc.Components = *r.Components
		}
		out = append(out, rc)
	}
	return out, nil
}

// customizations turns composer's cloud customizations into a blueprint
// named name and decodes it with pkg/blueprint's strict decoder, so the
// request is held to the same rules as a blueprint file; errors name the
// request's fields.
func (c *converter) customizations(cu *Customizations, name, description string) (*blueprint.Blueprint, []byte, error) {
	doc := map[string]any{"name": name}
	if description != "" {
		doc["description"] = description
	}
	if cu == nil {
		return parseBlueprint(doc, nil)
	}
	bc := map[string]any{}
	var fields []fieldMap
	if cu.Packages != nil {
		var pkgs []map[string]string
		for _, p := range *cu.Packages {
			pkgs = append(pkgs, map[string]string{"name": p})
		}
		doc["packages"] = pkgs
		fields = append(fields, fieldMap{"packages", "customizations.packages"})
	}
	if cu.Users != nil {
		var users []map[string]any
		for i, u := range *cu.Users {
			m := map[string]any{"name": u.Name}
			if u.Groups != nil {
				m["groups"] = *u.Groups
			}
			if u.Password != nil {
				m["password"] = *u.Password
			}
			switch {
			case u.Key != nil && u.SshKey != nil:
				return nil, nil, badField(fmt.Sprintf("customizations.users[%d].ssh_key", i), "give key or ssh_key, not both")
			case u.Key != nil:
				m["key"] = *u.Key
			case u.SshKey != nil:
				m["key"] = *u.SshKey
			}
			users = append(users, m)
		}
		bc["user"] = users
		fields = append(fields, fieldMap{"customizations.user", "customizations.users"})
	}
	if cu.Groups != nil {
		bc["group"] = *cu.Groups
		fields = append(fields, fieldMap{"customizations.group", "customizations.groups"})
	}
	if cu.Files != nil {
		bc["files"] = *cu.Files
	}
	if cu.Directories != nil {
		bc["directories"] = *cu.Directories
	}
	if cu.Services != nil {
		bc["services"] = cu.Services
	}
	if cu.Firewall != nil {
		bc["firewall"] = cu.Firewall
	}
	if cu.Hostname != nil {
		bc["hostname"] = *cu.Hostname
	}
	if cu.Kernel != nil {
		bc["kernel"] = cu.Kernel
	}
	if cu.Timezone != nil {
		bc["timezone"] = cu.Timezone
	}
	if cu.Locale != nil {
		bc["locale"] = cu.Locale
	}
	if cu.Filesystem != nil {
		var fss []map[string]any
		for _, fs := range *cu.Filesystem {
			fss = append(fss, map[string]any{"mountpoint": fs.Mountpoint, "minsize": fs.MinSize})
		}
		bc["filesystem"] = fss
		fields = append(fields, fieldMap{"minsize", "min_size"})
	}
	if cu.CustomRepositories != nil {
		var repos []map[string]any
		for i, r := range *cu.CustomRepositories {
			f := fmt.Sprintf("customizations.custom_repositories[%d]", i)
			m := map[string]any{"id": r.Id, "install_from": true}
			set := func(k string, v any, ok bool) {
				if ok {
					m[k] = v
				}
			}
			if r.Baseurl != nil {
				for j, u := range *r.Baseurl {
					if err := c.checkURL(fmt.Sprintf("%s.baseurl[%d]", f, j), u); err != nil {
						return nil, nil, err
					}
				}
				m["baseurls"] = *r.Baseurl
			}
			if r.Gpgkey != nil {
				for j, k := range *r.Gpgkey {
					if strings.HasPrefix(strings.TrimSpace(k), armorHeader) {
						continue
					}
					if err := c.checkURL(fmt.Sprintf("%s.gpgkey[%d]", f, j), k); err != nil {
						return nil, nil, err
					}
				}
				m["gpgkeys"] = *r.Gpgkey
			}
			for k, v := range map[string]*string{"mirrorlist": r.Mirrorlist, "metalink": r.Metalink} {
				if v != nil {
					if err := c.checkURL(f+"."+k, *v); err != nil {
						return nil, nil, err
					}
					m[k] = *v
				}
			}
			set("name", deref(r.Name), r.Name != nil)
			set("filename", deref(r.Filename), r.Filename != nil)
			set("enabled", r.Enabled, r.Enabled != nil)
			set("gpgcheck", r.CheckGpg, r.CheckGpg != nil)
			set("repo_gpgcheck", r.CheckRepoGpg, r.CheckRepoGpg != nil)
			set("sslverify", r.SslVerify, r.SslVerify != nil)
			set("priority", r.Priority, r.Priority != nil)
			set("module_hotfixes", r.ModuleHotfixes, r.ModuleHotfixes != nil)
			set("suites", r.Suites, r.Suites != nil)
			set("components", r.Components, r.Components != nil)
			repos = append(repos, m)
		}
		bc["repositories"] = repos
		fields = append(fields,
			fieldMap{"customizations.repositories", "customizations.custom_repositories"},
			fieldMap{".baseurls", ".baseurl"}, fieldMap{".gpgkeys", ".gpgkey"},
			fieldMap{".repo_gpgcheck", ".check_repo_gpg"}, fieldMap{".gpgcheck", ".check_gpg"},
			fieldMap{".sslverify", ".ssl_verify"})
	}
	if cu.PayloadRepositories != nil {
		// Resolved against, not written into the image: the
		// blueprint's resolve_only repositories.
		prs, err := c.repositories("customizations.payload_repositories", *cu.PayloadRepositories)
		if err != nil {
			return nil, nil, err
		}
		repos, _ := bc["repositories"].([]map[string]any)
		// The blueprint's errors about them name the request's field:
		// the highest index first, so that [1] does not rewrite [10].
		var pfields []fieldMap
		for i := len(prs) - 1; i >= 0; i-- {
			pfields = append(pfields, fieldMap{fmt.Sprintf("customizations.repositories[%d]", len(repos)+i), fmt.Sprintf("customizations.payload_repositories[%d]", i)})
		}
		fields = append(append(pfields, fields...), fieldMap{".baseurls", ".baseurl"}, fieldMap{".gpgkeys", ".gpgkey"})
		for i, r := range prs {
			m := map[string]any{"id": fmt.Sprintf("payload-repository-%d", i), "baseurls": r.BaseURLs, "resolve_only": true}
			if len(r.GPGKeys) > 0 {
				m["gpgkeys"] = r.GPGKeys
			}
			if r.Suites != nil {
				m["suites"] = r.Suites
			}
			if r.Components != nil {
				m["components"] = r.Components
			}
			repos = append(repos, m)
		}
		bc["repositories"] = repos
	}
	if len(bc) > 0 {
		doc["customizations"] = bc
	}
	return parseBlueprint(doc, fields)
}

// blueprint decodes a whole blueprint given in the request.
func (c *converter) blueprint(raw json.RawMessage) (*blueprint.Blueprint, []byte, error) {
	bp, err := blueprint.Parse("blueprint.json", raw)
	if err != nil {
		return nil, nil, blueprintError(err, "blueprint.", nil)
	}
	if cu := bp.Customizations; cu != nil {
		for i, f := range cu.Files {
			if f.URI != "" {
				return nil, nil, badField(fmt.Sprintf("blueprint.customizations.files[%d].uri", i), "not supported over the API: give the file's data")
			}
		}
		for i, r := range cu.Repositories {
			f := fmt.Sprintf("blueprint.customizations.repositories[%d]", i)
			for j, u := range r.BaseURLs {
				if err := c.checkURL(fmt.Sprintf("%s.baseurls[%d]", f, j), u); err != nil {
					return nil, nil, err
				}
			}
			for j, k := range r.GPGKeys {
				if strings.HasPrefix(strings.TrimSpace(k), armorHeader) {
					continue
				}
				if err := c.checkURL(fmt.Sprintf("%s.gpgkeys[%d]", f, j), k); err != nil {
					return nil, nil, err
				}
			}
			for k, v := range map[string]string{"mirrorlist": r.Mirrorlist, "metalink": r.Metalink} {
				if v != "" {
					if err := c.checkURL(f+"."+k, v); err != nil {
						return nil, nil, err
					}
				}
			}
		}
	}
	return bp, raw, nil
}

// fieldMap renames a part of a blueprint field's path to the request's.
type fieldMap struct{ from, to string }

func parseBlueprint(doc map[string]any, fields []fieldMap) (*blueprint.Blueprint, []byte, error) {
	data, err := json.Marshal(doc)
	if err != nil {
		return nil, nil, fmt.Errorf("encoding blueprint: %w", err)
	}
	bp, err := blueprint.Parse("customizations.json", data)
	if err != nil {
		return nil, nil, blueprintError(err, "", fields)
	}
	return bp, data, nil
}

// blueprintError turns the decoder's errors into one 400 naming the
// request's field (the first error's; the reason lists them all).
func blueprintError(err error, prefix string, fields []fieldMap) error {
	errs := blueprint.Errors(err)
	if len(errs) == 0 {
		return &apiError{Status: 400, Code: codeCustomizations, Field: strings.TrimSuffix(prefix, "."), Msg: err.Error()}
	}
	var msgs []string
	first := ""
	for _, e := range errs {
		f := e.Field
		if prefix == "" && !strings.HasPrefix(f, "customizations") && !strings.HasPrefix(f, "packages") {
			f = "customizations"
		}
		for _, m := range fields {
			f = strings.ReplaceAll(f, m.from, m.to)
		}
		f = prefix + f
		if first == "" {
			// apiError puts the first field before the reason.
			first = f
			msgs = append(msgs, e.Msg)
			continue
		}
		msgs = append(msgs, f+": "+e.Msg)
	}
	return &apiError{Status: 400, Code: codeCustomizations, Field: first, Msg: strings.Join(msgs, "; ")}
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
