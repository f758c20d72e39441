#!/bin/sh
# LocalStack's boot.d hook (docker-compose.localstack.yml): install mk1's plugin into LocalStack's own
# virtualenv before its runtime starts. No download: the plugin is pure Python, built with the
# setuptools already there, from a copy (pip builds in the source tree, which is mounted read-only).
set -e
python=/opt/code/localstack/.venv/bin/python
[ -x "$python" ] || python=python3
rm -rf /tmp/mk1-localstack-plugin && cp -r /opt/mk1-localstack-plugin /tmp/mk1-localstack-plugin
"$python" -m pip install -q --no-deps --no-build-isolation /tmp/mk1-localstack-plugin
