package renderer_test

import (
	"fmt"

	"github.com/ferry-dev/ferry/plans"
	"github.com/ferry-dev/ferry/renderer"
)

func ExampleRender() {
	web := &plans.Service{Namespace: "shop", Name: "web", Port: 80}
	m := &plans.Migration{
		Name: "to-eks", From: "dc1", To: "eks", Provider: plans.Linkerd,
		Steps: []plans.Step{{Weight: 0}, {Weight: 25}, {Weight: 100}},
		Waves: []*plans.Wave{{Name: "one", Services: []*plans.Service{web}}},
	}
	repo := &plans.Repository{
		Clusters:   map[string]*plans.Cluster{"dc1": {Name: "dc1"}, "eks": {Name: "eks"}},
		Migrations: []*plans.Migration{m},
	}
	res, err := renderer.Render(repo, plans.Steps{{Migration: "to-eks", Service: "shop/web"}: 1})
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, c := range res.Clusters {
		for _, o := range c.Objects {
			fmt.Println(c.Name, o.Kind, o.Namespace+"/"+o.Name, "partial:", o.Partial)
		}
	}
	fmt.Printf("%s", res.Cluster("eks").Objects[1].YAML)
	// Output:
	// dc1 Service shop/web-local partial: false
	// dc1 TrafficSplit shop/web partial: false
	// eks Service shop/web-local partial: false
	// eks TrafficSplit shop/web partial: false
	// apiVersion: split.smi-spec.io/v1alpha2
	// kind: TrafficSplit
	// metadata:
	//   labels:
	//     app.kubernetes.io/managed-by: ferry
	//     ferry.dev/migration: to-eks
	//     ferry.dev/service: shop.web
	//   name: web
	//   namespace: shop
	// spec:
	//   backends:
	//   - service: web-local
	//     weight: 25
	//   - service: web-local-dc1
	//     weight: 75
	//   service: web
}
