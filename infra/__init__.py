"""The CDK app: one Stage per environment (dev, preprod, prod), each holding one ``LatestApk`` stack.

``infra/app.py`` only instantiates; the stack is composed in :mod:`infra.stack` from the components in
:mod:`infra.components`. What is built comes from the environment table in :mod:`cicd.config`.
"""

from __future__ import annotations
