/*
 * fhmap-unionfs as a system service: readiness and stop notification for
 * systemd (sd_notify, Type=notify units) and a syslog sink for the messages
 * of a daemon that detached from its terminal (started by mount(8) or from
 * /etc/fstab, whose stderr is /dev/null then).
 */
#ifndef FHMAP_UNIONFS_SERVICE_H
#define FHMAP_UNIONFS_SERVICE_H

/*
 * Detaching, in two steps, so that nothing crosses a fork that must not (the
 * map's LMDB environments and flusher thread belong to the process that
 * opened them) and a mount that fails still tells its caller why:
 * ufs_service_detach() forks before the daemon opens anything; the parent
 * waits, and exits 0 once the child calls ufs_service_detached() (the union
 * is mounted), or with the child's exit status when it ends before that, its
 * messages written to the caller's stderr. Returns 0 in the child or a
 * negative errno (no child).
 */
int ufs_service_detach(void);

/*
 * In the child of ufs_service_detach(), once mounted: a session of its own,
 * / as working directory, stdin, stdout and stderr on /dev/null, messages to
 * syslog (ufs_service_log_to_syslog()), and the parent released.
 */
void ufs_service_detached(void);

/*
 * From now on, everything written to stderr (the daemon's and libfuse's
 * messages) goes to syslog (the journal, where journald runs). Call once,
 * after detaching. Returns 0 or a negative errno (then said to syslog).
 */
int ufs_service_log_to_syslog(void);

/*
 * Tells the service manager (NOTIFY_SOCKET, if set) READY=1 as soon as the
 * union mounted on MOUNTPOINT answers: a thread waits for a stat of the
 * mount root, which the kernel holds back until the daemon's loop has
 * answered INIT. Logs "serving" when logging to syslog. The thread keeps
 * its own copy of MOUNTPOINT. Returns 0 or a negative errno.
 */
int ufs_service_notify_ready(const char *mountpoint);

/* Tells the service manager (and syslog) that the daemon is stopping. */
void ufs_service_notify_stopping(const char *mountpoint);

#endif
