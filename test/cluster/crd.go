package cluster

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextensionsclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/sets"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"

	"github.com/ferry-dev/ferry/test/crds"
)

// pollInterval is how often the harness looks whether CRDs are ready.
const pollInterval = 50 * time.Millisecond

// loadCRDs reads every CRD of the cache's crds/ directory and of package
// test/crds. Documents of other kinds are skipped; a CRD in an API version
// other than apiextensions.k8s.io/v1 is an error, since no supported API
// server accepts it.
func loadCRDs() ([]*apiextensionsv1.CustomResourceDefinition, error) {
	dir := CRDDir()
	if _, err := os.Stat(filepath.Join(dir, "VERSIONS")); err != nil {
		return nil, fmt.Errorf("%w: no CRDs in %s", ErrNoBinaries, dir)
	}
	var out []*apiextensionsv1.CustomResourceDefinition
	seen := map[string]string{}
	add := func(fsys fs.FS, origin string) error {
		return fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !(strings.HasSuffix(p, ".yaml") || strings.HasSuffix(p, ".yml")) {
				return err
			}
			b, err := fs.ReadFile(fsys, p)
			if err != nil {
				return err
			}
			file := origin + "/" + p
			list, err := decodeCRDs(b)
			if err != nil {
				return fmt.Errorf("%s: %w", file, err)
			}
			for _, crd := range list {
				if prev, ok := seen[crd.Name]; ok {
					return fmt.Errorf("CRD %s defined twice: in %s and %s", crd.Name, prev, file)
				}
				seen[crd.Name] = file
				out = append(out, crd)
			}
			return nil
		})
	}
	if err := add(os.DirFS(dir), dir); err != nil {
		return nil, err
	}
	if err := add(crds.FS, "test/crds"); err != nil {
		return nil, err
	}
	return out, nil
}

// decodeCRDs decodes the CustomResourceDefinitions of a multi-document YAML
// or JSON file.
func decodeCRDs(b []byte) ([]*apiextensionsv1.CustomResourceDefinition, error) {
	var out []*apiextensionsv1.CustomResourceDefinition
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(b)))
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal(doc, &tm); err != nil {
			return nil, err
		}
		if tm.Kind != "CustomResourceDefinition" {
			continue // empty document, or not a CRD
		}
		if tm.APIVersion != apiextensionsv1.SchemeGroupVersion.String() {
			return nil, fmt.Errorf("CRD in %s: only %s is served", tm.APIVersion, apiextensionsv1.SchemeGroupVersion)
		}
		crd := &apiextensionsv1.CustomResourceDefinition{}
		if err := yaml.Unmarshal(doc, crd); err != nil {
			return nil, err
		}
		out = append(out, crd)
	}
}

// installCRDs creates the CRDs (a few at a time) and waits until each is
// Established and each served version is in discovery.
func installCRDs(ctx context.Context, cfg *rest.Config, list []*apiextensionsv1.CustomResourceDefinition) error {
	cs, err := apiextensionsclient.NewForConfig(cfg)
	if err != nil {
		return err
	}
	crdClient := cs.ApiextensionsV1().CustomResourceDefinitions()

	sem := make(chan struct{}, 4)
	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
	)
	for _, crd := range list {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			_, err := crdClient.Create(ctx, crd.DeepCopy(), metav1.CreateOptions{FieldManager: "ferry-test"})
			if err != nil && !apierrors.IsAlreadyExists(err) {
				mu.Lock()
				errs = append(errs, fmt.Errorf("create CRD %s: %w", crd.Name, err))
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}

	// Established: the API server accepts the names and serves the resource.
	pending := sets.New[string]()
	for _, crd := range list {
		pending.Insert(crd.Name)
	}
	err = poll(ctx, func() (bool, error) {
		got, err := crdClient.List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, nil //nolint:nilerr // the server may still be settling; retry until ctx ends
		}
		for _, crd := range got.Items {
			for _, c := range crd.Status.Conditions {
				if c.Type == apiextensionsv1.Established && c.Status == apiextensionsv1.ConditionTrue {
					pending.Delete(crd.Name)
				}
				if c.Type == apiextensionsv1.NamesAccepted && c.Status == apiextensionsv1.ConditionFalse {
					return false, fmt.Errorf("CRD %s: names not accepted: %s", crd.Name, c.Message)
				}
			}
		}
		return pending.Len() == 0, nil
	})
	if err != nil {
		return fmt.Errorf("wait for CRDs to be Established (still waiting for %s): %w", strings.Join(sets.List(pending), ", "), err)
	}

	// Discovery: clients that map kinds to resources see every served version.
	want := map[string]sets.Set[string]{} // group/version -> plural names
	for _, crd := range list {
		for _, v := range crd.Spec.Versions {
			if !v.Served {
				continue
			}
			gv := crd.Spec.Group + "/" + v.Name
			if want[gv] == nil {
				want[gv] = sets.New[string]()
			}
			want[gv].Insert(crd.Spec.Names.Plural)
		}
	}
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return err
	}
	var missing []string
	err = poll(ctx, func() (bool, error) {
		_, lists, err := dc.ServerGroupsAndResources()
		if err != nil {
			return false, nil //nolint:nilerr // partial discovery while CRDs register; retry
		}
		found := map[string]sets.Set[string]{}
		for _, l := range lists {
			s := sets.New[string]()
			for _, r := range l.APIResources {
				s.Insert(r.Name)
			}
			found[l.GroupVersion] = s
		}
		missing = missing[:0]
		for gv, plurals := range want {
			for _, p := range sets.List(plurals) {
				if !found[gv].Has(p) {
					missing = append(missing, gv+"/"+p)
				}
			}
		}
		return len(missing) == 0, nil
	})
	if err != nil {
		slices.Sort(missing)
		return fmt.Errorf("wait for CRDs in discovery (still missing %s): %w", strings.Join(missing, ", "), err)
	}
	return nil
}

// poll calls cond every pollInterval until it returns true or an error, or
// ctx ends.
func poll(ctx context.Context, cond func() (bool, error)) error {
	t := time.NewTicker(pollInterval)
	defer t.Stop()
	for {
		ok, err := cond()
		if err != nil || ok {
			return err
		}
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-t.C:
		}
	}
}
