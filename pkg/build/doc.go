// Package build runs one entry of a lockfile: it downloads and verifies the
// pinned packages, runs the entry's pipelines stage by stage in namespaces,
// caches every stage's tree in a content-addressed object store, and moves
// the last pipeline's files to the output directory.
//
// Commands run through Runner (NewRunner), which re-executes the current
// binary to set up namespaces; the hook for that is installed by importing
// this package (package nsrun's init), so neither main functions nor
// TestMain need to call anything. Tests of package stages that want a real
// Runner live in package stages_test and call build.NewRunner().
package build
