package upload

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/image-builder-action/image-builder-action/pkg/upload/uploadtest"
)

// Protocol tests: EC2 has no emulator here, so an HTTP server checks each
// request against EC2's documented Query API (action, version, required
// parameters, a SigV4 signature header) and answers as the API reference
// shows. The staging object goes to a real S3 server (versitygw), which the
// fake EC2 reads the way ImportSnapshot would. It is not a cloud: what only
// a real account shows (the import itself, the AMI booting) is not tested
// here.

type fakeEC2 struct {
	t        *testing.T
	s3       *s3.Client
	img      *Image
	mu       sync.Mutex
	calls    []string
	images   map[string]string            // name → AMI id
	tags     map[string]map[string]string // resource id → its tags
	polls    int
	throttle map[string]int // action → 503 replies still to give
	// importFails makes the import task end with this status message.
	importFails string
	// registerErr is RegisterImage's error code (400).
	registerErr string
	stagingKey  string
	// tokens are ImportSnapshot's client tokens seen, with the other
	// parameters sent with them: EC2 refuses a token sent again with
	// others (IdempotentParameterMismatch).
	tokens map[string]string
}

func (f *fakeEC2) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	t := f.t
	if r.Method != http.MethodPost {
		t.Errorf("EC2 %s %s: the Query API is POSTed", r.Method, r.URL)
	}
	if err := r.ParseForm(); err != nil {
		t.Error(err)
	}
	auth := r.Header.Get("Authorization")
	if !strings.HasPrefix(auth, "AWS4-HMAC-SHA256 Credential="+uploadtest.S3Access+"/") || !strings.Contains(auth, "/ec2/aws4_request") || r.Header.Get("X-Amz-Date") == "" {
		t.Errorf("EC2 request without a SigV4 signature for ec2: %q", auth)
	}
	act := r.PostForm.Get("Action")
	if v := r.PostForm.Get("Version"); v != "2016-11-15" {
		t.Errorf("%s: Version %q", act, v)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, act)
	if f.throttle[act] > 0 {
		f.throttle[act]--
		ec2Error(w, 503, "RequestLimitExceeded", "Request limit exceeded.")
		return
	}
	need := func(keys ...string) {
		for _, k := range keys {
			if r.PostForm.Get(k) == "" {
				t.Errorf("%s without %s: %v", act, k, r.PostForm)
			}
		}
	}
	want := func(k, v string) {
		if got := r.PostForm.Get(k); got != v {
			t.Errorf("%s: %s=%q, want %q", act, k, got, v)
		}
	}
	switch act {
	case "DescribeImages":
		want("Owner.1", "self")
		want("Filter.1.Name", "name")
		name := r.PostForm.Get("Filter.1.Value.1")
		set := ""
		if id, ok := f.images[name]; ok {
			tags := ""
			for k, v := range f.tags[id] {
				tags += fmt.Sprintf(`<item><key>%s</key><value>%s</value></item>`, k, v)
			}
			set = fmt.Sprintf(`<item><imageId>%s</imageId><name>%s</name><imageState>available</imageState><blockDeviceMapping><item><deviceName>/dev/xvda</deviceName><ebs><snapshotId>snap-0a1</snapshotId></ebs></item></blockDeviceMapping><tagSet>%s</tagSet></item>`, id, name, tags)
		}
		ec2Reply(w, act, "<imagesSet>"+set+"</imagesSet>")
	case "ImportSnapshot":
		need("ClientToken", "DiskContainer.UserBucket.S3Bucket", "DiskContainer.UserBucket.S3Key")
		want("DiskContainer.Format", "RAW")
		if tok := r.PostForm.Get("ClientToken"); len(tok) > 64 {
			t.Errorf("ImportSnapshot: ClientToken of %d characters, EC2 takes at most 64", len(tok))
		}
		var params []string
		for k, v := range r.PostForm {
			if k != "ClientToken" && k != "Action" && k != "Version" {
				params = append(params, k+"="+strings.Join(v, ","))
			}
		}
		slices.Sort(params)
		if prev, ok := f.tokens[r.PostForm.Get("ClientToken")]; ok && prev != strings.Join(params, "&") {
			ec2Error(w, 400, "IdempotentParameterMismatch", "The request has a duplicate client token with different parameters.")
			return
		}
		if f.tokens == nil {
			f.tokens = map[string]string{}
		}
		f.tokens[r.PostForm.Get("ClientToken")] = strings.Join(params, "&")
		want("TagSpecification.1.ResourceType", "import-snapshot-task")
		// Read the staging object as the import would.
		key := r.PostForm.Get("DiskContainer.UserBucket.S3Key")
		f.stagingKey = key
		obj, err := f.s3.GetObject(r.Context(), &s3.GetObjectInput{Bucket: aws.String(r.PostForm.Get("DiskContainer.UserBucket.S3Bucket")), Key: &key})
		if err != nil {
			t.Errorf("ImportSnapshot: the staging object: %v", err)
		} else {
			if got := sha256Of(t, obj.Body); got != f.img.SHA256 {
				t.Errorf("staging object sha256:%s, image sha256:%s", got, f.img.SHA256)
			}
			obj.Body.Close()
		}
		ec2Reply(w, act, `<importTaskId>import-snap-0f1</importTaskId><snapshotTaskDetail><status>active</status></snapshotTaskDetail>`)
	case "DescribeImportSnapshotTasks":
		want("ImportTaskId.1", "import-snap-0f1")
		f.polls++
		detail := `<status>active</status><progress>42</progress>`
		switch {
		case f.polls >= 2 && f.importFails != "":
			detail = `<status>deleted</status><statusMessage>` + f.importFails + `</statusMessage>`
		case f.polls >= 2:
			detail = `<status>completed</status><snapshotId>snap-0a1</snapshotId>`
		}
		ec2Reply(w, act, `<importSnapshotTaskSet><item><importTaskId>import-snap-0f1</importTaskId><snapshotTaskDetail>`+detail+`</snapshotTaskDetail></item></importSnapshotTaskSet>`)
	case "RegisterImage":
		need("Name")
		want("Architecture", "x86_64")
		want("BootMode", "uefi-preferred")
		want("EnaSupport", "true")
		want("VirtualizationType", "hvm")
		want("RootDeviceName", "/dev/xvda")
		want("BlockDeviceMapping.1.DeviceName", "/dev/xvda")
		want("BlockDeviceMapping.1.Ebs.SnapshotId", "snap-0a1")
		if f.registerErr != "" {
			ec2Error(w, 400, f.registerErr, "You have reached your quota of AMIs.")
			return
		}
		f.images[r.PostForm.Get("Name")] = "ami-0c0ffee"
		ec2Reply(w, act, `<imageId>ami-0c0ffee</imageId>`)
	case "CreateTags":
		for i, k := range []string{"Name", TagLockfile, TagImage} {
			want(fmt.Sprintf("Tag.%d.Key", i+1), k)
		}
		want("Tag.3.Value", f.img.SHA256)
		for i := 1; r.PostForm.Get(fmt.Sprintf("ResourceId.%d", i)) != ""; i++ {
			id := r.PostForm.Get(fmt.Sprintf("ResourceId.%d", i))
			if id != "ami-0c0ffee" && id != "snap-0a1" {
				t.Errorf("CreateTags on %s", id)
			}
			if f.tags[id] == nil {
				f.tags[id] = map[string]string{}
			}
			for j := 1; j <= 3; j++ {
				f.tags[id][r.PostForm.Get(fmt.Sprintf("Tag.%d.Key", j))] = r.PostForm.Get(fmt.Sprintf("Tag.%d.Value", j))
			}
		}
		ec2Reply(w, act, `<return>true</return>`)
	case "ModifySnapshotAttribute":
		want("SnapshotId", "snap-0a1")
		want("Attribute", "createVolumePermission")
		want("CreateVolumePermission.Add.1.UserId", "123456789012")
		ec2Reply(w, act, `<return>true</return>`)
	case "ModifyImageAttribute":
		want("ImageId", "ami-0c0ffee")
		want("LaunchPermission.Add.1.UserId", "123456789012")
		ec2Reply(w, act, `<return>true</return>`)
	case "DeleteSnapshot":
		want("SnapshotId", "snap-0a1")
		ec2Reply(w, act, `<return>true</return>`)
	default:
		t.Errorf("unexpected EC2 action %s", act)
		ec2Error(w, 400, "InvalidAction", act)
	}
}

func ec2Reply(w http.ResponseWriter, action, body string) {
	w.Header().Set("Content-Type", "text/xml;charset=UTF-8")
	fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?>
<%sResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><requestId>59dbff89-35bd-4eac-99ed-be587EXAMPLE</requestId>%s</%sResponse>`, action, body, action)
}

func ec2Error(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "text/xml;charset=UTF-8")
	w.WriteHeader(status)
	fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?>
<Response><Errors><Error><Code>%s</Code><Message>%s</Message></Error></Errors><RequestID>ea966190-f9aa-478e-9ede-example</RequestID></Response>`, code, msg)
}

func (f *fakeEC2) actions() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return strings.Join(f.calls, " ")
}

func awsProtocolSetup(t *testing.T) (*AWS, *fakeEC2, string) {
	srv := uploadtest.Versitygw(t, "", 0)
	makeBucket(t, srv.URL, "staging")
	img := sparseImage(t, "disk.raw", 64<<20, 0, -1)
	cfg := testAWSConfig(uploadtest.S3Access, uploadtest.S3Secret, 0)
	cfg.Retryer = func() aws.Retryer {
		return retry.NewStandard(func(o *retry.StandardOptions) { o.MaxBackoff = 10 * time.Millisecond })
	}
	f := &fakeEC2{t: t, s3: testS3Client(t, srv.URL), img: img, images: map[string]string{}, tags: map[string]map[string]string{}, throttle: map[string]int{}}
	ec2srv := httptest.NewServer(f)
	t.Cleanup(ec2srv.Close)
	target := &AWS{Bucket: "staging", S3Endpoint: srv.URL, EC2Endpoint: ec2srv.URL, Poll: time.Millisecond, Config: cfg,
		ShareWithAccounts: []string{"123456789012"}}
	return target, f, srv.URL
}

func TestAWSProtocolImportRegisterShare(t *testing.T) {
	target, f, s3url := awsProtocolSetup(t)
	// Throttled twice on the task's status: the SDK retries.
	f.throttle["DescribeImportSnapshotTasks"] = 2
	res, err := target.Upload(context.Background(), f.img)
	if err != nil {
		t.Fatal(err)
	}
	if res.ID != "ami-0c0ffee" || res.Region != uploadtest.S3Region || res.Reused {
		t.Errorf("result %+v", res)
	}
	want := "DescribeImages ImportSnapshot DescribeImportSnapshotTasks DescribeImportSnapshotTasks DescribeImportSnapshotTasks DescribeImportSnapshotTasks RegisterImage CreateTags ModifySnapshotAttribute ModifyImageAttribute"
	if got := f.actions(); got != want {
		t.Errorf("calls:\n got %s\nwant %s", got, want)
	}
	if keys, ups := objects(t, s3url, "staging"); len(keys)+len(ups) != 0 {
		t.Errorf("staging bucket holds %v, uploads %v after the import", keys, ups)
	}

	// The same image again: found by name, nothing sent or imported.
	f.calls = nil
	res, err = target.Upload(context.Background(), f.img)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Reused || res.ID != "ami-0c0ffee" || res.BytesSent != 0 {
		t.Errorf("second upload: %+v", res)
	}
	if got := f.actions(); got != "DescribeImages ModifySnapshotAttribute ModifyImageAttribute" {
		t.Errorf("second upload's calls: %s", got)
	}
}

func TestAWSProtocolImportTaskFails(t *testing.T) {
	target, f, s3url := awsProtocolSetup(t)
	f.importFails = "ClientError: Disk validation failed [Unsupported specified file format]"
	_, err := target.Upload(context.Background(), f.img)
	var ue *Error
	if !errors.As(err, &ue) || ue.Target != "aws" || !strings.Contains(ue.Step, "importing snapshot") || !strings.Contains(err.Error(), "Disk validation failed") {
		t.Fatalf("got %v, want the import task's failure", err)
	}
	t.Log(err)
	if strings.Contains(f.actions(), "RegisterImage") {
		t.Error("an image was registered from a failed import")
	}
	if keys, ups := objects(t, s3url, "staging"); len(keys)+len(ups) != 0 {
		t.Errorf("staging bucket holds %v, uploads %v after a failed import", keys, ups)
	}
}

func TestAWSProtocolQuotaOnRegister(t *testing.T) {
	target, f, s3url := awsProtocolSetup(t)
	f.registerErr = "ResourceLimitExceeded"
	_, err := target.Upload(context.Background(), f.img)
	var ue *Error
	if !errors.As(err, &ue) || ue.Code != "ResourceLimitExceeded" || ue.Step != "registering image" {
		t.Fatalf("got %v, want the quota error of the register step", err)
	}
	t.Log(err)
	// The snapshot is removed: nothing is left half-registered.
	if !strings.HasSuffix(f.actions(), "RegisterImage DeleteSnapshot") {
		t.Errorf("calls: %s; want the snapshot deleted after the failed register", f.actions())
	}
	if keys, ups := objects(t, s3url, "staging"); len(keys)+len(ups) != 0 {
		t.Errorf("staging bucket holds %v, uploads %v", keys, ups)
	}
}

// image_name and snapshot_name: the AMI and its snapshot are named (and
// tagged) as asked; the same image again is reused; another image under
// that name fails before anything is sent or imported.
func TestAWSProtocolImageName(t *testing.T) {
	target, f, _ := awsProtocolSetup(t)
	target.ImageName, target.SnapshotName = "web image (1)", "web-1 snapshot"
	res, err := target.Upload(context.Background(), f.img)
	if err != nil {
		t.Fatal(err)
	}
	if res.ID != "ami-0c0ffee" || res.Reused {
		t.Errorf("result %+v", res)
	}
	if f.images["web image (1)"] != "ami-0c0ffee" {
		t.Errorf("registered names %v", f.images)
	}
	if got := f.tags["ami-0c0ffee"]["Name"]; got != "web image (1)" {
		t.Errorf("the AMI's Name tag %q", got)
	}
	if got := f.tags["snap-0a1"]["Name"]; got != "web-1 snapshot" {
		t.Errorf("the snapshot's Name tag %q", got)
	}
	if !strings.Contains(f.actions(), "RegisterImage CreateTags CreateTags") {
		t.Errorf("calls %s", f.actions())
	}
	f.calls = nil
	if res, err := target.Upload(context.Background(), f.img); err != nil || !res.Reused || res.BytesSent != 0 {
		t.Fatalf("the same image again: %+v, %v", res, err)
	}
	other := sparseImage(t, "disk.raw", 32<<20, 0)
	f.calls = nil
	if _, err := target.Upload(context.Background(), other); !errors.Is(err, ErrNameTaken) {
		t.Fatalf("another image under the same name: %v, want ErrNameTaken", err)
	}
	if got := f.actions(); got != "DescribeImages" {
		t.Errorf("calls after the name was found taken: %s", got)
	}
}

// The same image uploaded as another AMI (another image_name, so another
// snapshot name) is another import: its client token is not the first
// import's sent with other parameters, which EC2 refuses.
func TestAWSProtocolSameImageTwoNames(t *testing.T) {
	target, f, _ := awsProtocolSetup(t)
	target.ImageName = "web-a"
	if _, err := target.Upload(context.Background(), f.img); err != nil {
		t.Fatal(err)
	}
	target.ImageName = "web-b"
	res, err := target.Upload(context.Background(), f.img)
	if err != nil {
		t.Fatalf("the same image as another AMI: %v", err)
	}
	if res.Reused || f.images["web-b"] == "" {
		t.Errorf("result %+v, registered %v", res, f.images)
	}
	if got := f.tags["snap-0a1"]["Name"]; got != "web-b" {
		t.Errorf("the snapshot's Name tag %q", got)
	}
	if len(f.tokens) != 2 {
		t.Errorf("%d client tokens for two imports", len(f.tokens))
	}
}
