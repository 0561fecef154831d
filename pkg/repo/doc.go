// Package repo reads apt repository metadata: the host's apt sources
// (HostSources), signed InRelease files and the Packages indices they vouch
// for (Client), and the Packages format itself (ParsePackages).
//
// Nothing is trusted that the keyring does not vouch for: an InRelease is
// read only through its verified signed text, and every index is checked
// against that text's SHA256 list while it is parsed, whether it comes from
// the network or from the cache.
package repo
