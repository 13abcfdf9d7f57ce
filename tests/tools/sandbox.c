/*
 * sandbox - run a command under the parts of systemd/churnd.service's
 * sandbox that the kernel can impose without systemd as PID 1, so the
 * tests can see churnd work under them (scripts/check-sandbox.sh):
 *
 *   MemoryDenyWriteExecute=yes    prctl(PR_SET_MDWE): no page may become
 *                                 writable and executable, nor gain exec
 *   RestrictAddressFamilies=      socket() outside AF_UNIX, AF_INET and
 *     AF_INET AF_INET6 AF_UNIX    AF_INET6 fails with EAFNOSUPPORT
 *   RestrictNamespaces=yes        clone3() fails with ENOSYS (systemd cannot
 *                                 inspect its flags, so it refuses it and
 *                                 libc falls back to clone()), unshare()
 *                                 and setns() with EPERM
 *   SystemCallArchitectures=      a call through another ABI kills
 *     native
 *   NoNewPrivileges=yes           PR_SET_NO_NEW_PRIVS
 *
 *   sandbox COMMAND [ARG]...
 *
 * The command keeps this process's pid (exec), so signals and
 * WATCHDOG_PID reach it. Which system calls churnd makes is checked
 * against SystemCallFilter= from a trace instead (the script), because
 * the groups' contents come from systemd-analyze. Exit 127 when the
 * sandbox cannot be set up or the command not run.
 */
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef PR_SET_MDWE
#define PR_SET_MDWE 65
#define PR_GET_MDWE 66
#endif
#ifndef PR_MDWE_REFUSE_EXEC_GAIN
#define PR_MDWE_REFUSE_EXEC_GAIN 1
#endif

#if defined(__x86_64__)
#define NATIVE_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define NATIVE_ARCH AUDIT_ARCH_AARCH64
#else
#error "sandbox: add this machine's AUDIT_ARCH_ value"
#endif

#define LD_(field) BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, field))
#define RET_(v) BPF_STMT(BPF_RET | BPF_K, (v))
/* if (A == k) skip `t` instructions, else skip `f` */
#define IF_EQ_(k, t, f) BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (k), (t), (f))

static int install_filter(void) {
    struct sock_filter f[] = {
        LD_(arch),
        IF_EQ_(NATIVE_ARCH, 1, 0),
        RET_(SECCOMP_RET_KILL_PROCESS),
        LD_(nr),
        IF_EQ_(__NR_clone3, 0, 1),
        RET_(SECCOMP_RET_ERRNO | ENOSYS),
        IF_EQ_(__NR_unshare, 1, 0),
        IF_EQ_(__NR_setns, 0, 1),
        RET_(SECCOMP_RET_ERRNO | EPERM),
        IF_EQ_(__NR_socket, 0, 5),
        LD_(args[0]), /* the address family (low 32 bits) */
        IF_EQ_(AF_UNIX, 3, 0),
        IF_EQ_(AF_INET, 2, 0),
        IF_EQ_(AF_INET6, 1, 0),
        RET_(SECCOMP_RET_ERRNO | EAFNOSUPPORT),
        RET_(SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = {
        .len = (unsigned short)(sizeof(f) / sizeof(f[0])),
        .filter = f,
    };
    return prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: sandbox COMMAND [ARG]...\n");
        return 127;
    }
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
        fprintf(stderr, "sandbox: PR_SET_NO_NEW_PRIVS: %s\n", strerror(errno));
        return 127;
    }
    if (prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0) != 0) {
        fprintf(stderr, "sandbox: PR_SET_MDWE (Linux 6.3 or later): %s\n",
                strerror(errno));
        return 127;
    }
    if (install_filter() != 0) {
        fprintf(stderr, "sandbox: seccomp: %s\n", strerror(errno));
        return 127;
    }
    execvp(argv[1], argv + 1);
    fprintf(stderr, "sandbox: %s: %s\n", argv[1], strerror(errno));
    return 127;
}
