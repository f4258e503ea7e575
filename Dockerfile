# syntax=docker/dockerfile:1
# Notification service image. Two stages: the first compiles TypeScript with the
# dev dependencies, the second holds only dist/ and production dependencies.
# .ci/rehearse-image.sh replays the runtime stage without Docker (CI has no engine).

# ---- build: compile src/ to dist/ -------------------------------------------
FROM node:24-slim AS build
WORKDIR /app
# Manifests first: the npm ci layer is reused until the lockfile changes.
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build

# ---- runtime ----------------------------------------------------------------
# Node 24 is the active LTS line; slim (glibc) rather than alpine to match the
# build stage and CI.
FROM node:24-slim AS runtime
ENV NODE_ENV=production
WORKDIR /app
COPY package.json package-lock.json ./
# Production dependencies only; drop npm's cache so it does not bloat the layer.
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force
COPY --from=build /app/dist ./dist
# The publish script: read at start-up, and the file other languages call.
COPY redis ./redis
# Files stay owned by root and read-only to the process; it runs as the
# unprivileged `node` user (uid 1000) that the official image provides.
USER node
EXPOSE 8080
# Liveness only (/healthz never checks Redis, so a Redis outage does not get the
# container restarted). Node itself does the request: slim images have no curl.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.PORT || 8080) + '/healthz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
# server.ts handles SIGTERM: ends every stream, closes Redis, exits 0 within
# SHUTDOWN_TIMEOUT_MS. Node runs as PID 1 directly (no npm wrapper) so it gets it.
STOPSIGNAL SIGTERM
CMD ["node", "dist/server.js"]
