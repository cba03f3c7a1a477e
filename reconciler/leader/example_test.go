package leader_test

import (
	"context"
	"log/slog"

	"k8s.io/client-go/kubernetes"

	"github.com/ferry-dev/ferry/reconciler/leader"
)

// A daemon runs its loop only while it leads, and its applier asks the
// fence before every write.
func ExampleElector_Run() {
	run := func(ctx context.Context, client kubernetes.Interface, loop func(ctx context.Context, mayWrite func() bool), gauge func(bool)) error {
		e, err := leader.New(leader.Config{
			Client:   client, // Namespace ferry-system, Lease ferry, 15s/10s/2s
			Logger:   slog.Default(),
			OnChange: gauge, // e.g. ferry_leader set to 1 or 0
		})
		if err != nil {
			return err
		}
		return e.Run(ctx, func(ctx context.Context) {
			loop(ctx, e.Leading) // returns when ctx is cancelled
		})
	}
	_ = run
}
