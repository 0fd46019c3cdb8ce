# One image for every deployable; the command picks which (`punchingfist ingest`, ...).
FROM python:3.11-slim
WORKDIR /app
COPY setup.cfg pyproject.toml README.md ./
COPY shared ./shared
COPY services ./services
RUN pip install --no-cache-dir .
USER 65534
ENTRYPOINT ["punchingfist"]
