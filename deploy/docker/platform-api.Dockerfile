# syntax=docker/dockerfile:1
# Cloister platform-api: the platform API (FHIR R4, workflow, audit).
# Build from the repository root, labelling the image with the measurement of the code it carries:
#   docker build -f deploy/docker/platform-api.Dockerfile \
#     --build-arg CLOISTER_MEASUREMENT="$(npx cloister measure platform-api)" -t cloister/platform-api:0.1.0 .
# The measurement is SHA-256 over the built code (services/platform-api/dist and the packages it runs), the value
# the service's simulated TEE reports and the one release and attestation policies name. TypeScript output is
# deterministic, so the same source gives the same value (deploy/test/deploy.test.ts builds it twice).
# Pin the base images by digest in production (docker buildx imagetools inspect node:20.20.2-bookworm-slim).

# Production dependencies only: no build tools, no test libraries in the image.
FROM node:20.20.2-bookworm-slim AS deps
WORKDIR /app
COPY package.json package-lock.json .npmrc ./
COPY packages/attestation/package.json packages/attestation/
COPY packages/cli/package.json packages/cli/
COPY packages/enclave/package.json packages/enclave/
COPY packages/imaging/package.json packages/imaging/
COPY packages/ohttp/package.json packages/ohttp/
COPY packages/service-kit/package.json packages/service-kit/
COPY services/attestation-service/package.json services/attestation-service/
COPY services/inference-server/package.json services/inference-server/
COPY services/key-broker/package.json services/key-broker/
COPY services/platform-api/package.json services/platform-api/
COPY services/portal/package.json services/portal/
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund \
 && npm rebuild better-sqlite3 \
 && npm cache clean --force

# The build: the whole workspace, compiled by tsc.
FROM node:20.20.2-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json .npmrc tsconfig.base.json ./
COPY packages packages
COPY services services
RUN npm ci --no-audit --no-fund

FROM node:20.20.2-bookworm-slim AS runtime
ARG CLOISTER_MEASUREMENT=unset
LABEL org.opencontainers.image.title="cloister-platform-api" \
      org.opencontainers.image.description="Cloister the platform API (FHIR R4, workflow, audit)" \
      org.opencontainers.image.licenses="UNLICENSED" \
      dev.cloister.service="platform-api" \
      dev.cloister.sgx-product-id="4" \
      dev.cloister.measurement="${CLOISTER_MEASUREMENT}"
ENV NODE_ENV=production \
    CLOISTER_DATA_DIR=/data \
    CLOISTER_LISTEN_HOST=0.0.0.0 \
    CLOISTER_PLATFORM_PORT=7446
WORKDIR /app
COPY --from=deps /app/node_modules node_modules
COPY --from=build /app/package.json ./
COPY --from=build /app/packages/attestation/package.json packages/attestation/
COPY --from=build /app/packages/attestation/dist packages/attestation/dist
COPY --from=build /app/packages/enclave/package.json packages/enclave/
COPY --from=build /app/packages/enclave/dist packages/enclave/dist
COPY --from=build /app/packages/imaging/package.json packages/imaging/
COPY --from=build /app/packages/imaging/dist packages/imaging/dist
COPY --from=build /app/packages/ohttp/package.json packages/ohttp/
COPY --from=build /app/packages/ohttp/dist packages/ohttp/dist
COPY --from=build /app/packages/service-kit/package.json packages/service-kit/
COPY --from=build /app/packages/service-kit/dist packages/service-kit/dist
COPY --from=build /app/services/platform-api/package.json services/platform-api/
COPY --from=build /app/services/platform-api/dist services/platform-api/dist
# Read-only root filesystem: the service writes only to /data (its volume) and /tmp.
VOLUME ["/data", "/tmp"]
USER node
EXPOSE 7446
HEALTHCHECK --interval=30s --timeout=5s --start-period=40s --retries=3 \
  CMD ["node", "packages/service-kit/dist/healthcheck.js", "7446"]
ENTRYPOINT ["node", "services/platform-api/dist/main.js"]
