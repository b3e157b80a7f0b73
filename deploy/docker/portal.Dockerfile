# syntax=docker/dockerfile:1
# Cloister portal: the static single-page app, served by unprivileged nginx with the security headers of
# deploy/docker/portal-nginx.conf. /config.json is mounted at run time (the Helm chart's ConfigMap).
# A release build fixes the accepted platform measurements into the bundle:
#   docker build -f deploy/docker/portal.Dockerfile \
#     --build-arg CLOISTER_PLATFORM_MEASUREMENTS="$(npx cloister measure platform-api)" -t cloister/portal:0.1.0 .

FROM node:20.20.2-bookworm-slim AS build
ARG CLOISTER_PLATFORM_MEASUREMENTS=""
WORKDIR /app
COPY package.json package-lock.json .npmrc tsconfig.base.json ./
COPY packages packages
COPY services services
RUN npm ci --ignore-scripts --no-audit --no-fund \
 && npx tsc -b packages/attestation packages/ohttp packages/imaging packages/enclave \
 && CLOISTER_PLATFORM_MEASUREMENTS="${CLOISTER_PLATFORM_MEASUREMENTS}" npm run build --workspace @cloister/portal

FROM nginxinc/nginx-unprivileged:1.27.5-alpine AS runtime
ARG CLOISTER_PLATFORM_MEASUREMENTS=""
LABEL org.opencontainers.image.title="cloister-portal" \
      org.opencontainers.image.description="Cloister clerk portal (static files)" \
      dev.cloister.service="portal" \
      dev.cloister.platform-measurements="${CLOISTER_PLATFORM_MEASUREMENTS}"
COPY deploy/docker/portal-nginx.conf /etc/nginx/conf.d/default.conf
COPY deploy/docker/portal-headers.conf /etc/nginx/cloister-headers.conf
COPY --from=build /app/services/portal/dist /usr/share/nginx/html
USER 101
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --retries=3 CMD ["wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/healthz"]
ENTRYPOINT ["nginx", "-g", "daemon off;"]
