# The devspace server image: API, OAuth server, SSH CA and reconciler (one package).
# Built by CI elsewhere; this machine has no Docker engine, so it is not built in tests here.
FROM python:3.11-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY cli ./cli
COPY server ./server
RUN pip wheel --no-cache-dir --wheel-dir /wheels '.[server]'

FROM python:3.11-slim-bookworm
RUN useradd --system --uid 10001 --home-dir /var/lib/devspace --create-home devspace
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links /wheels 'devspace[server]' && rm -rf /wheels
USER 10001
ENV DEVSPACE_DATA_DIR=/var/lib/devspace
EXPOSE 8080
ENTRYPOINT ["devspace-server"]
CMD ["serve"]
