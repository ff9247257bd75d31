"""The ROS 2 YAML launch format, run without ``launch``/``launch_ros`` (not installable from PyPI).

``autopilot launch FILE [name:=value ...]`` reads the same files as ``ros2 launch`` and starts the same
command lines. Pipeline: :mod:`.parser` (YAML with line numbers, schema and substitution syntax checks)
-> :mod:`.evaluate` (conditions, includes, substitutions, executables, parameter files: a
:class:`~.evaluate.Plan`) -> :mod:`.runner` (processes, output, respawn, shutdown). Every error in the
first two stages names file, line and key, and nothing has started yet.

Supported actions: ``arg`` (name, default, description, choice), ``let``, ``node`` (pkg, exec, name,
namespace, exec_name, param -- inline, nested and ``from:`` files with ``allow_substs`` --, remap, args,
ros_args, env, output, respawn, respawn_delay, respawn_max_retries, sigterm_timeout, sigkill_timeout,
launch-prefix, cwd, on_exit: shutdown), ``executable`` (cmd, name, shell and the same process keys),
``group`` (scoped, forwarding, keep), ``push-ros-namespace``/``push_ros_namespace``, ``include`` (file,
arg), ``set_env``, ``unset_env``, ``append_env``, ``set_parameter``, ``set_remap``, ``log``; ``if`` and
``unless`` on every action. Substitutions: var, env, find-pkg-share, find-pkg-prefix, exec-in-pkg,
find-exec, anon, dirname, filename, eval, not, and, or, any, all, equals, not-equals, if, command,
file-content, launch_log_dir/log_dir. Not supported (clear error): timer, shutdown, reset, composable
node containers, lifecycle nodes, ``$(param)``; ``emulate_tty`` is accepted and ignored with a warning.
"""
