"""Programs and components the runtime's tests (and ``bench/``) start or import — never collected as tests.

``leader_candidate``, ``operator_main`` and ``supervisor_main`` run as processes of their own;
``components`` and ``kube_components`` are the supervisor's child components (targets
``tests.runtime.programs.components:NAME``); ``cmcontroller`` is a small ConfigMap controller and
``tcpproxy`` a TCP proxy that can cut or freeze connections for the fault tests.
"""
