// Package deploy holds the Kustomize base that runs ferry in a cluster
// (kubectl apply -k deploy/) and its tests; it has no Go API. The tests
// build the base with the kustomize API, send it to a real API server, and
// check that its RBAC grants what ferry renders and reads and nothing
// more, and that the top-level Dockerfile builds.
package deploy
