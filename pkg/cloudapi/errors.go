package cloudapi

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
)

// Error codes, in composer's form IMAGE-BUILDER-COMPOSER-N. The numbers are
// ibuild's; clients match on the code, people read the reason.
const (
	codeDistribution   = 4
	codeArch           = 5
	codeImageType      = 6
	codeRepository     = 7
	codeCustomizations = 8
	codeUpload         = 9
	codeNotFound       = 14
	codeNotReady       = 15
	codeUnauthorized   = 16
	codeBodyTooLarge   = 17
	codeValidation     = 30
	codeMethod         = 31
	codeInternal       = 1000
)

// apiError is an error the API reports: its HTTP status, its code and,
// when a field of the request is at fault, the field (JSON path, array
// indexes in brackets).
type apiError struct {
	Status int
	Code   int
	Field  string
	Msg    string
}

func (e *apiError) Error() string {
	if e.Field != "" {
		return e.Field + ": " + e.Msg
	}
	return e.Msg
}

func badField(field, msg string) *apiError {
	return &apiError{Status: http.StatusBadRequest, Code: codeValidation, Field: field, Msg: msg}
}

// body is the error in composer's shape. The reason starts with the
// field; details.field holds it alone for programs.
func (e *apiError) body(operation string) Error {
	out := Error{
		Kind:        "Error",
		Id:          strconv.Itoa(e.Code),
		Href:        "/api/image-builder-composer/v2/errors/" + strconv.Itoa(e.Code),
		Code:        fmt.Sprintf("IMAGE-BUILDER-COMPOSER-%d", e.Code),
		Reason:      e.Error(),
		OperationId: operation,
	}
	if e.Field != "" {
		out.Details = map[string]string{"field": e.Field}
	}
	return out
}

func writeError(w http.ResponseWriter, r *http.Request, e *apiError) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(e.Status)
	json.NewEncoder(w).Encode(e.body(operationID(r)))
}

type opKey struct{}

// operationID is the request's id for the logs, composer's operation_id.
func operationID(r *http.Request) string {
	if r == nil {
		return ""
	}
	id, _ := r.Context().Value(opKey{}).(string)
	return id
}
