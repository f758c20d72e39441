# The image docker-compose.localstack.yml runs the dispatcher and the UI from.
FROM python:3.11-slim
WORKDIR /app
COPY . /app
RUN python -m venv .venv && .venv/bin/pip install --no-cache-dir -r requirements.txt
ENV PYTHONUNBUFFERED=1
