package apply

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Retire prunes everything of migration's inventory and then the inventory
// itself: the migration left the plans and its traffic is back at 0%.
// Routes and splits go first, exports last, so that no route ever points
// at an export that is already gone. Objects that cannot be pruned (a
// failed call) stay in the inventory for the next try.
func (a *Applier) Retire(ctx context.Context, migration string) (ChangeSet, error) {
	inv, err := a.readInventory(ctx, migration)
	if err != nil || inv == nil {
		return nil, err
	}
	order := slices.Clone(inv)
	slices.SortStableFunc(order, func(x, y entry) int { return retireRank(x) - retireRank(y) })
	var (
		cs   ChangeSet
		errs []error
	)
	keep := map[ObjectID]entry{}
	for _, e := range order {
		c, kept, err := a.prune(ctx, e)
		if c.Action != "" {
			cs = append(cs, c)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("cluster %s: retire %s: %w", a.cluster, e.id(), err))
		}
		if kept {
			keep[e.id()] = e
		}
	}
	if len(keep) > 0 {
		errs = append(errs, a.writeInventory(ctx, migration, inv, keep))
		return cs, errors.Join(errs...)
	}
	err = a.call(ctx, func(ctx context.Context) error {
		return a.kube.CoreV1().ConfigMaps(InventoryNamespace).Delete(ctx, InventoryName(migration), metav1.DeleteOptions{})
	})
	if err != nil && !apierrors.IsNotFound(err) {
		errs = append(errs, fmt.Errorf("cluster %s: delete inventory of %s: %w", a.cluster, migration, err))
	}
	return cs, errors.Join(errs...)
}

// retireRank orders a retirement: what routes traffic first, then what
// receives it.
func retireRank(e entry) int {
	switch {
	case strings.HasSuffix(e.Kind, "Route"), e.Kind == "TrafficSplit", e.Kind == "VirtualService", e.Kind == "DestinationRule":
		return 0
	case strings.Contains(e.Kind, "Export"), strings.Contains(e.Kind, "Import"):
		return 2
	case e.Kind == "Service" && e.APIVersion == corev1.SchemeGroupVersion.String():
		return 3
	default:
		return 1
	}
}
