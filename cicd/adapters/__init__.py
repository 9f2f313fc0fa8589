"""The CI adapters: the pipeline model rendered for eight CI/CD tools, validated by each tool's own validator.

``plan`` cuts the model into jobs; one module per tool renders them (``github``, ``gitlab``, ``circleci``,
``bitbucket``, ``azure``, ``codecatalyst``, ``jenkins``, ``codebuild``) and reads its output back (``facts``) for the
parity and property checks; ``registry`` lists them; ``guide`` and ``extras`` render the comparison guide, the
pre-commit hooks and the dependency-update configuration; ``validate`` runs the validators; ``runners`` executes
pull-request jobs locally with act and gitlab-ci-local; ``cli`` is the task glue (``inv adapters.generate``,
``inv adapters.check``, ``inv adapters.bump``) and the ``adapters-check`` step.
"""
