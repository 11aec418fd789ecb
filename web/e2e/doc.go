// Package e2e holds the web UI's browser suite: TestBrowser (build tag
// "browser") starts a broker UI in-process on loopback with seeded
// recordings and drives Debian chromium through playwright-core
// (suite.mjs). run.sh installs what it needs and runs it; `make test`
// does through `make test-browser`.
package e2e
