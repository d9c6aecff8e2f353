# Loopwatch collector image: builds this repository (npm ci, npm run build) and runs
# `loopwatch up` on 0.0.0.0:4318. docker-compose.yml points it at the ClickHouse service with
# LOOPWATCH_CLICKHOUSE_URL; without it the collector uses the embedded engine under
# LOOPWATCH_DATA_DIR.

FROM node:20-bookworm AS build
WORKDIR /app
COPY package.json package-lock.json tsconfig.json ./
COPY collector ./collector
COPY instrumentation ./instrumentation
COPY queries ./queries
# npm ci runs the package's `prepare` (tsc), so the sources are copied first
RUN npm ci
RUN npm run build
RUN npm prune --omit=dev

FROM node:20-bookworm-slim
ENV NODE_ENV=production \
    LOOPWATCH_DATA_DIR=/var/lib/loopwatch
WORKDIR /app
COPY --from=build /app/package.json ./package.json
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
# read at run time: schema migrations, detector SQL, the OTLP .proto
COPY --from=build /app/queries ./queries
COPY --from=build /app/collector/proto ./collector/proto
RUN mkdir -p /var/lib/loopwatch && chown node:node /var/lib/loopwatch
USER node
VOLUME ["/var/lib/loopwatch"]
EXPOSE 4318 4317
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=5 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:4318/healthz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
CMD ["node", "dist/collector/src/cli/main.js", "up", "--host", "0.0.0.0"]
