package cloudapi

// The types and the server interface are generated from openapi.yml by the
// oapi-codegen pinned in go.mod (go tool); TestGenerated checks that the
// committed api.gen.go is what it generates.
//go:generate go tool oapi-codegen -config oapi-codegen.yaml openapi.yml
