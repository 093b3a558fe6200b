// Fork safety for the OpenMP kernels. libgomp's thread pool does not survive fork(): a child
// inherits the pool's bookkeeping but not its threads, so the first multi-thread parallel
// region the forking thread enters waits forever for them. A pthread_atfork child handler
// drops that thread to 1 OpenMP thread (a 1-thread region never touches the pool) and marks
// the process as a forked child, in which more threads cannot be granted safely.
#pragma once

namespace sg {

// Registers the child handler once per process (forked children inherit the registration).
void install_fork_guard();

// True in a process created by fork() after install_fork_guard() (any generation).
bool in_forked_child();

}  // namespace sg
