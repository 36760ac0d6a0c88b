//go:build tools

// Package tools pins what build-crds runs: controller-gen, and the Prometheus Operator's API
// types (a module of their own) that it reads the ServiceMonitor CRD from.
package tools

import (
	_ "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	_ "sigs.k8s.io/controller-tools/cmd/controller-gen"
)
