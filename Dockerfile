# syntax=docker/dockerfile:1
#
# telebridge container image: `docker build -t telebridge .`
#
# Stage 1 compiles TypeScript (the runtime has no native module; better-sqlite3 is a dev dependency
# of the spool benchmark only). Stage 2 gets the pruned production node_modules, the compiled output
# and the files read at run time — no compiler, no dev dependencies, no sources.

ARG NODE_IMAGE=node:20-bookworm-slim

FROM ${NODE_IMAGE} AS build
WORKDIR /app
COPY package.json package-lock.json ./
# --ignore-scripts: `prepare` would build before the sources are here.
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json ./
COPY src ./src
COPY bin ./bin
COPY web ./web
COPY firmware-sim ./firmware-sim
COPY bench ./bench
# The build type-checks the whole project; the benchmarks import the tests' service helpers.
COPY test ./test
RUN npm run build \
 && npm prune --omit=dev --no-audit --no-fund

FROM ${NODE_IMAGE} AS runtime
ENV NODE_ENV=production \
    BRIDGE_HOST=0.0.0.0 \
    BRIDGE_DATA_DIR=/data \
    BRIDGE_MQTT_PORT=1883 \
    BRIDGE_MQTTS_PORT=8883 \
    BRIDGE_HTTP_PORT=8080
WORKDIR /app
COPY --from=build --chown=root:root /app/package.json ./package.json
COPY --from=build --chown=root:root /app/node_modules ./node_modules
COPY --from=build --chown=root:root /app/dist ./dist
COPY --from=build --chown=root:root /app/bin ./bin
COPY --from=build --chown=root:root /app/web ./web
# The .proto files are read at run time (schema registry), not compiled.
COPY --from=build --chown=root:root /app/src/schemas ./src/schemas
# The code is owned by root and read-only to the service user; only /data is writable.
RUN mkdir -p /data && chown node:node /data
VOLUME ["/data"]
USER node
EXPOSE 1883 8883 8080
# Plain HTTP, or HTTPS with a self-signed certificate when BRIDGE_TLS_CERT is set: no curl needed.
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD ["node", "-e", "const s=!!process.env.BRIDGE_TLS_CERT;require(s?'node:https':'node:http').get({host:'127.0.0.1',port:process.env.BRIDGE_HTTP_PORT||8080,path:'/healthz',rejectUnauthorized:false,timeout:2000},r=>process.exit(r.statusCode===200?0:1)).on('error',()=>process.exit(1)).on('timeout',()=>process.exit(1))"]
# SIGTERM reaches node directly (exec form, PID 1): it flushes the spool and exits 0.
STOPSIGNAL SIGTERM
CMD ["node", "dist/src/main.js"]
