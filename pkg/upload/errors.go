package upload

import (
	"errors"
	"strconv"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/aws/smithy-go"
)

// errorCode is the cloud's error code in err ("RequestLimitExceeded",
// "QuotaExceeded", "InvalidAuthenticationInfo"), or "".
func errorCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	var ge *gcpError
	if errors.As(err, &ge) {
		return ge.Code
	}
	var re *azcore.ResponseError
	if errors.As(err, &re) {
		if re.ErrorCode != "" {
			return re.ErrorCode
		}
		return strconv.Itoa(re.StatusCode)
	}
	return ""
}
