package stages

import (
	"slices"
	"sort"
	"testing"
)

func TestDebVersionLess(t *testing.T) {
	got := []string{"6.1.0-10-amd64", "6.12.1-1-amd64", "6.1.0-9-amd64", "6.1.0-10-cloud-amd64"}
	sort.Slice(got, func(i, j int) bool { return debVersionLess(got[i], got[j]) })
	want := []string{"6.1.0-9-amd64", "6.1.0-10-amd64", "6.1.0-10-cloud-amd64", "6.12.1-1-amd64"}
	if !slices.Equal(got, want) {
		t.Errorf("sorted %v, want %v", got, want)
	}
}
