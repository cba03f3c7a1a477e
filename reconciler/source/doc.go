// Package source is ferry's Git source: it polls the plan repository, fetches
// a commit only when the configured branch, tag or pinned commit moved, checks
// it, and hands out immutable snapshots of the plan directory.
//
// A poll first lists the remote's references (one HTTP request or SSH
// command); nothing is fetched when the ref still points at a commit already
// seen. A new commit is fetched shallow (depth 1, that ref only, no tags)
// into a bare repository under the state directory, so a restart does not
// fetch everything again. The snapshot is read from the commit's tree, never
// a work tree, into memory: regular files only, with a per-file and a total
// size limit; symlinks are resolved when they stay inside the plan directory
// and refused otherwise.
//
// Before a commit is handed out it must pass, and every failure is reported
// together in a *RefusedError:
//
//   - history safety: it descends from the last accepted commit, unless
//     Config.AllowRewrite (the check deepens the shallow fetch as needed);
//   - signature, with Verify.Mode "head": an OpenPGP or SSH signature by one
//     of the trusted keys;
//   - a readable plan tree.
//
// The caller then loads, validates and renders the snapshot and calls Accept
// or Refuse (or lets Run do it). Only Accept changes the last good snapshot,
// and it is persisted in the state directory with the accepted SHA, so the
// history check survives restarts. A refused commit leaves the last good one
// in force.
//
// Errors are sorted by NeedsPerson: bad credentials, unknown host keys,
// missing refs and refused commits need a person; network and server errors
// are retried by Run with exponential backoff. Credentials come from files or
// environment variables (Secret), are re-read at every poll, and never appear
// in errors or logs. SSH always checks the host key against a known_hosts
// file.
//
// NewWebhook returns an http.Handler for GitHub and GitLab push events that
// triggers an immediate, coalesced poll.
//
// The package does not parse or validate plans (package plans does), render
// anything, or write to the repository.
package source
