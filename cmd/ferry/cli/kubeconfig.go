package cli

import (
	"fmt"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// kubeconfig is a loaded kubeconfig: path "" means $KUBECONFIG or
// ~/.kube/config, as kubectl does.
type kubeconfig struct {
	rules *clientcmd.ClientConfigLoadingRules
	cfg   *clientcmdapi.Config
}

func loadKubeconfig(path string) (*kubeconfig, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	if path != "" {
		rules.ExplicitPath = path
	}
	cfg, err := rules.Load()
	if err != nil {
		return nil, fmt.Errorf("load kubeconfig: %w", err)
	}
	return &kubeconfig{rules: rules, cfg: cfg}, nil
}

// has reports whether the kubeconfig defines context.
func (k *kubeconfig) has(context string) bool {
	_, ok := k.cfg.Contexts[context]
	return ok
}

// rest returns the client configuration of context.
func (k *kubeconfig) rest(context string) (*rest.Config, error) {
	cfg, err := clientcmd.NewNonInteractiveClientConfig(*k.cfg, context, &clientcmd.ConfigOverrides{}, k.rules).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("context %s: %w", context, err)
	}
	return cfg, nil
}
