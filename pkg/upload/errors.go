package upload

import (
	"errors"

	"github.com/aws/smithy-go"
)

// errorCode is the cloud's error code in err ("RequestLimitExceeded",
// "QuotaExceeded", "InvalidAuthenticationInfo"), or "".
func errorCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}
