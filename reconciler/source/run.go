package source

import (
	"context"
	"time"
)

// Run polls every Interval, and at once on Trigger, until ctx is done, then
// returns nil. Each new candidate is passed to apply, which loads, validates
// and renders it (and may go on to apply it):
//
//   - nil: the candidate is accepted (Accept).
//   - an error wrapped with RetryLater: it is offered again after a backoff.
//   - any other error: the candidate is refused (Refuse) and the last good
//     snapshot stays in force.
//
// Errors that may go away by themselves back off exponentially from
// BackoffMin to BackoffMax; those that need a person are reported once and
// polled again at the normal interval. Status reports the latest of both.
func (s *Source) Run(ctx context.Context, apply func(context.Context, *Snapshot) error) error {
	failures := 0
	var reported string // last error logged, so a standing one is not repeated
	for {
		wait := s.cfg.Interval
		snap, changed, err := s.Poll(ctx)
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil && NeedsPerson(err):
			failures = 0
			if msg := err.Error(); msg != reported {
				reported = msg
				if _, isRefusal := err.(*RefusedError); !isRefusal { // Poll logged those
					s.log.Error("poll failed; needs attention", "error", err)
				}
			}
		case err != nil:
			wait = s.backoff(failures)
			failures++
			s.log.Warn("poll failed; retrying", "error", err, "retry_in", wait)
		case changed:
			reported = ""
			aerr := apply(ctx, snap)
			switch {
			case ctx.Err() != nil:
				return nil
			case aerr == nil:
				failures = 0
				if err := s.Accept(snap.Revision); err != nil {
					// The snapshot is in force but not persisted: retry,
					// Poll offers it again.
					wait = s.backoff(failures)
					failures++
					s.log.Error("accept failed; retrying", "revision", snap.Revision, "error", err, "retry_in", wait)
				}
			case isRetryLater(aerr):
				wait = s.backoff(failures)
				failures++
				s.log.Warn("apply failed; retrying", "revision", snap.Revision, "error", aerr, "retry_in", wait)
			default:
				failures = 0
				s.Refuse(snap.Revision, aerr)
			}
		default:
			failures, reported = 0, ""
		}

		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-s.trigger:
			t.Stop()
		case <-t.C:
		}
	}
}

// backoff returns BackoffMin·2^n, capped at BackoffMax.
func (s *Source) backoff(n int) time.Duration {
	d := s.cfg.BackoffMin
	for range n {
		d *= 2
		if d >= s.cfg.BackoffMax {
			return s.cfg.BackoffMax
		}
	}
	return d
}
