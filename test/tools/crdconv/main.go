// Command crdconv rewrites a CustomResourceDefinition written for the
// apiextensions.k8s.io/v1beta1 API, which API servers stopped serving in
// Kubernetes 1.22, as apiextensions.k8s.io/v1, using the API server's own
// conversion, and sets which of its versions are served.
//
// testbin.sh uses it for SMI's TrafficSplit: the only tagged smi-sdk-go
// module (v0.5.0) ships a v1beta1 CRD that serves v1alpha4 alone, while
// linkerd-smi, the implementation ferry drives, serves v1alpha1 and v1alpha2.
//
//	crdconv -serve v1alpha1,v1alpha2 -storage v1alpha1 < split.yaml > split.v1.yaml
//
// Versions not named by -serve are dropped.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"k8s.io/apiextensions-apiserver/pkg/apis/apiextensions"
	"k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/install"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1beta1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/yaml"
)

func main() {
	serve := flag.String("serve", "", "comma-separated versions to serve; others are dropped (default: keep all, served as given)")
	storage := flag.String("storage", "", "the storage version (default: unchanged)")
	flag.Parse()
	if err := run(os.Stdin, os.Stdout, *serve, *storage); err != nil {
		fmt.Fprintf(os.Stderr, "crdconv: %v\n", err)
		os.Exit(1)
	}
}

func run(in io.Reader, out io.Writer, serve, storage string) error {
	data, err := io.ReadAll(in)
	if err != nil {
		return err
	}
	var old v1beta1.CustomResourceDefinition
	if err := yaml.UnmarshalStrict(data, &old); err != nil {
		return fmt.Errorf("read v1beta1 CRD: %w", err)
	}
	if old.APIVersion != v1beta1.SchemeGroupVersion.String() || old.Kind != "CustomResourceDefinition" {
		return fmt.Errorf("input is %s %s, not a %s CustomResourceDefinition", old.APIVersion, old.Kind, v1beta1.SchemeGroupVersion)
	}

	scheme := runtime.NewScheme()
	install.Install(scheme)
	scheme.Default(&old)
	var internal apiextensions.CustomResourceDefinition
	if err := scheme.Convert(&old, &internal, nil); err != nil {
		return fmt.Errorf("convert to internal: %w", err)
	}
	var crd apiextensionsv1.CustomResourceDefinition
	if err := scheme.Convert(&internal, &crd, nil); err != nil {
		return fmt.Errorf("convert to v1: %w", err)
	}
	crd.APIVersion = apiextensionsv1.SchemeGroupVersion.String()
	crd.Kind = "CustomResourceDefinition"
	crd.Status = apiextensionsv1.CustomResourceDefinitionStatus{}
	// v1 requires structural schemas and no longer keeps unknown fields;
	// v1beta1 files often left the root type out.
	crd.Spec.PreserveUnknownFields = false
	for i := range crd.Spec.Versions {
		if s := crd.Spec.Versions[i].Schema; s != nil && s.OpenAPIV3Schema != nil && s.OpenAPIV3Schema.Type == "" {
			s.OpenAPIV3Schema.Type = "object"
		}
	}

	if serve != "" {
		want := strings.Split(serve, ",")
		crd.Spec.Versions = slices.DeleteFunc(crd.Spec.Versions, func(v apiextensionsv1.CustomResourceDefinitionVersion) bool {
			return !slices.Contains(want, v.Name)
		})
		if len(crd.Spec.Versions) != len(want) {
			return fmt.Errorf("-serve %s: CRD %s has only some of these versions", serve, crd.Name)
		}
		for i := range crd.Spec.Versions {
			crd.Spec.Versions[i].Served = true
		}
	}
	if storage != "" {
		found := false
		for i := range crd.Spec.Versions {
			crd.Spec.Versions[i].Storage = crd.Spec.Versions[i].Name == storage
			found = found || crd.Spec.Versions[i].Storage
		}
		if !found {
			return fmt.Errorf("-storage %s: no such version in CRD %s", storage, crd.Name)
		}
	}
	if len(crd.Spec.Versions) == 0 {
		return errors.New("no versions left")
	}

	b, err := yaml.Marshal(&crd)
	if err != nil {
		return err
	}
	_, err = out.Write(b)
	return err
}
