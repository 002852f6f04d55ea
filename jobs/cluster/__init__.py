"""Where jobs run: the local or remote Ray session, the cluster's resources and placement,
submission to a running cluster, KubeRay manifests and their offline check."""
