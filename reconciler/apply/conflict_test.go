package apply

import (
	"errors"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

func TestOnlyUpdateManagers(t *testing.T) {
	conflict := func(msgs ...string) error {
		causes := make([]metav1.StatusCause, len(msgs))
		for i, m := range msgs {
			causes[i] = metav1.StatusCause{Type: metav1.CauseTypeFieldManagerConflict, Message: m, Field: ".spec"}
		}
		err := apierrors.NewConflict(schema.GroupResource{Resource: "trafficsplits"}, "cart", errors.New("Apply failed"))
		err.ErrStatus.Details.Causes = causes
		return err
	}
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"update manager", conflict(`conflict with "kubectl-edit" using split.smi-spec.io/v1alpha2 at 2026-11-23T11:00:00Z`), true},
		{"update manager without time", conflict(`conflict with "kubectl-patch" using v1`), true},
		{"subresource update", conflict(`conflict with "ctl" with subresource "status" using v1`), true},
		{"apply manager", conflict(`conflict with "kubectl"`), false},
		{"both", conflict(`conflict with "kubectl-edit" using v1`, `conflict with "kubectl"`), false},
		{"no causes", apierrors.NewConflict(schema.GroupResource{Resource: "x"}, "y", errors.New("z")), false},
		{"not an API error", errors.New("conflict with \"a\" using v1"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := onlyUpdateManagers(tc.err); got != tc.want {
				t.Errorf("onlyUpdateManagers = %v, want %v", got, tc.want)
			}
		})
	}
}
