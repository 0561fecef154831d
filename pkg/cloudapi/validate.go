package cloudapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"
)

var (
	docOnce sync.Once
	doc     *openapi3.T
	docErr  error
)

// Document returns the API's OpenAPI document, parsed and validated.
func Document() (*openapi3.T, error) {
	docOnce.Do(func() {
		doc, docErr = GetSwagger()
		if docErr == nil {
			docErr = doc.Validate(context.Background())
		}
		if docErr != nil {
			docErr = fmt.Errorf("loading the OpenAPI document: %w", docErr)
		}
	})
	return doc, docErr
}

// validator checks every request against the document before a handler
// sees it, with kin-openapi's request validation (the part of its
// validator middleware that reads requests: the middleware itself also
// buffers every response to check it, which a multi-gigabyte download must
// not be). A request that fails gets composer's error naming the field.
type validator struct {
	router routers.Router
	opts   openapi3filter.Options
}

func newValidator() (*validator, error) {
	d, err := Document()
	if err != nil {
		return nil, err
	}
	r, err := legacy.NewRouter(d)
	if err != nil {
		return nil, fmt.Errorf("routing the OpenAPI document: %w", err)
	}
	v := &validator{router: r}
	// The bearer token was checked before (auth runs first, as composer
	// answers 401 before looking at the request).
	v.opts.AuthenticationFunc = openapi3filter.NoopAuthenticationFunc
	v.opts.MultiError = false
	return v, nil
}

func (v *validator) middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		route, params, err := v.router.FindRoute(r)
		if err != nil {
			var re *routers.RouteError
			if errors.As(err, &re) && re.Reason == routers.ErrMethodNotAllowed.Error() {
				writeError(w, r, &apiError{Status: http.StatusMethodNotAllowed, Code: codeMethod, Msg: r.Method + " " + r.URL.Path + ": method not allowed"})
				return
			}
			writeError(w, r, &apiError{Status: http.StatusNotFound, Code: codeNotFound, Msg: r.URL.Path + ": no such endpoint"})
			return
		}
		in := &openapi3filter.RequestValidationInput{Request: r, PathParams: params, Route: route, Options: &v.opts}
		if err := openapi3filter.ValidateRequest(r.Context(), in); err != nil {
			writeError(w, r, validationError(err))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// validationError names the field a validation error is about: the JSON
// path into the body (image_requests[0].image_type) or the parameter.
func validationError(err error) *apiError {
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return &apiError{Status: http.StatusRequestEntityTooLarge, Code: codeBodyTooLarge,
			Msg: fmt.Sprintf("the request body is larger than %d bytes", tooBig.Limit)}
	}
	e := &apiError{Status: http.StatusBadRequest, Code: codeValidation, Msg: err.Error()}
	var se *openapi3.SchemaError
	if errors.As(err, &se) {
		e.Field = jsonPath(se.JSONPointer())
		e.Msg = se.Reason
		if e.Field == "" {
			e.Field = "body"
		}
		// A disallowed property is named by the reason, not the path.
		if name, ok := strings.CutPrefix(se.Reason, "property \""); ok && strings.HasSuffix(se.Reason, "\" is unsupported") {
			name, _, _ = strings.Cut(name, "\"")
			e.Field = strings.TrimPrefix(e.Field+"."+name, "body.")
			e.Msg = "unknown field"
		}
		if se.SchemaField == "enum" && se.Schema != nil {
			var vals []string
			for _, v := range se.Schema.Enum {
				vals = append(vals, fmt.Sprint(v))
			}
			e.Msg = fmt.Sprintf("%v is not one of %s", se.Value, strings.Join(vals, ", "))
		}
		return e
	}
	var re *openapi3filter.RequestError
	if errors.As(err, &re) {
		switch {
		case re.Parameter != nil:
			e.Field = re.Parameter.Name
			e.Msg = re.Reason
			if re.Err != nil {
				e.Msg = strings.TrimPrefix(re.Reason+": "+re.Err.Error(), ": ")
			}
		case re.RequestBody != nil:
			e.Field = "body"
			e.Msg = re.Error()
		}
	}
	return e
}

// jsonPath turns a JSON pointer's parts into a dotted path with array
// indexes in brackets.
func jsonPath(parts []string) string {
	var b strings.Builder
	for _, p := range parts {
		if _, err := strconv.Atoi(p); err == nil && b.Len() > 0 {
			b.WriteString("[" + p + "]")
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		b.WriteString(p)
	}
	return b.String()
}
