#!/bin/sh
# Flux → deploywatch from the pipeline that promotes a version (see
# flux-alert.yaml, way B): mark the deploy started, let Flux apply the new
# revision and wait for it, mark the outcome. Needs the flux CLI with access
# to the cluster, the deploywatch binary, and in the environment
# DEPLOYWATCH_SERVER, DEPLOYWATCH_TOKEN, SERVICE, DEPLOY_ENV, GIT_SHA and
# KUSTOMIZATION (the Flux Kustomization that deploys SERVICE).
set -eu
id=$(deploywatch mark deploy --service "$SERVICE" --env "$DEPLOY_ENV" \
  --version "$GIT_SHA" --sha "$GIT_SHA" --status started --labels source=flux)
status=succeeded
# --with-source fetches the new commit first; reconcile waits for the apply
# and the health checks, and fails if they do.
flux reconcile kustomization "$KUSTOMIZATION" --with-source --timeout 15m || status=failed
deploywatch mark deploy --id "$id" --service "$SERVICE" --env "$DEPLOY_ENV" \
  --version "$GIT_SHA" --sha "$GIT_SHA" --status "$status" --labels source=flux
[ "$status" = succeeded ]
