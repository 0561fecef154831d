// Package ibuild holds ibuild's use cases — Lock, Check, Build, Publish, Mirror —
// each a function taking a context and a request and returning a result.
// Every front door calls them: the CLI (cmd/ibuild/cmd) maps its flags to
// a request and prints the result, the GitHub Action (pkg/action) maps
// its inputs and reports to GitHub, a server maps HTTP. None of them
// repeats a step that lives here: reading and hashing the lockfile,
// checking it before a build, where built images go (pkg/layout), the
// blueprint's name and version, making the signer.
//
// The package prints nothing. Progress goes to the Events functions of a
// request, the output of the tools a build runs to its Log; a stale
// lockfile that a request allows comes back in the result for the front
// end to warn about.
package ibuild
