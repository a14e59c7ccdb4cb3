/*
 * pam_mamori.so — the second factor at Linux login, for mamori.
 *
 * A deliberately small C module (no Go runtime inside login, sshd or gdm:
 * a Go c-shared module does not survive sshd's fork). It first asks
 * mamori-agent over its root-only unix socket which factor the user has
 * (a TOTP code, or a PIN bound to this terminal's TPM), prompts for it
 * through the PAM conversation, sends user, service, remote host, method
 * and answer to the agent, and maps the verdict:
 *
 *   allow -> PAM_SUCCESS, deny -> PAM_AUTH_ERR, locked out -> PAM_MAXTRIES,
 *   agent unreachable -> PAM_AUTH_ERR (fail closed), except:
 *
 * Break-glass: when the agent cannot be reached, a one-time recovery code
 * is checked against the root-only break-glass file the agent keeps
 * (lines "USER SALT_HEX HASH": HASH is $argon2id$v=19$m=..,t=..,p=..$SALT$KEY,
 * argon2id with a salt per code, computed by libargon2.so.1 loaded at the
 * first such line; or, for codes issued before, hex SHA-256(salt ||
 * normalised code) under the user's SALT_HEX),
 * and the used line is removed and its hash appended to FILE.used, under
 * an exclusive flock on FILE.lock — the same protocol as agent/mfa
 * (breakglass.go). The wire format is agent/localapi's (localapi.go).
 *
 * Arguments: socket=PATH  breakglass=PATH  lang=ja|en  timeout=MILLISECONDS
 * (timeout: the most one login may spend waiting for the agent, both
 * questions together, on the monotonic clock; default 5000).
 * Build: make pam (gcc, libpam0g-dev).
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#define PAM_SM_AUTH
#include <security/pam_appl.h>
#include <security/pam_ext.h>
#include <security/pam_modules.h>

#include "mamori_common.h"

#define DEFAULT_SOCKET "/run/mamori/agent.sock"
#define DEFAULT_BREAKGLASS "/var/lib/mamori/mfa/breakglass"
#define MAX_FIELD 256
#define MAX_FILE (1 << 20)
/* A hash on a break-glass line: agent/mfa MaxBreakGlassHash. */
#define MAX_HASH 200

enum { V_ALLOW = 0, V_DENY = 1, V_LOCKED = 2, V_UNREACHABLE = -1 };
enum { M_TOTP = 0, M_PIN = 1 };
enum { OP_METHOD = 1, OP_VERIFY = 2 };

struct args {
	const char *socket;
	const char *breakglass;
	int ja;
	int timeout_ms;
	/* What is left of timeout_ms for this login's talks with the agent
	 * (both of them, typing time excluded), on the monotonic clock: an
	 * agent that answers one byte at a time cannot stretch a login
	 * beyond timeout_ms, as per-call socket timeouts let it. */
	long long budget_ms;
};

static long long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- helpers ---- */

static void parse_args(pam_handle_t *pamh, int argc, const char **argv, struct args *a)
{
	const char *lang = NULL;
	int i;
	a->socket = DEFAULT_SOCKET;
	a->breakglass = DEFAULT_BREAKGLASS;
	a->ja = -1;
	a->timeout_ms = 5000;
	for (i = 0; i < argc; i++) {
		if (strncmp(argv[i], "socket=", 7) == 0)
			a->socket = argv[i] + 7;
		else if (strncmp(argv[i], "breakglass=", 11) == 0)
			a->breakglass = argv[i] + 11;
		else if (strcmp(argv[i], "lang=ja") == 0)
			a->ja = 1;
		else if (strcmp(argv[i], "lang=en") == 0)
			a->ja = 0;
		else if (strncmp(argv[i], "timeout=", 8) == 0)
			a->timeout_ms = atoi(argv[i] + 8);
		else
			pam_syslog(pamh, LOG_WARNING, "unknown argument %s", argv[i]);
	}
	if (a->timeout_ms <= 0 || a->timeout_ms > 60000)
		a->timeout_ms = 5000;
	a->budget_ms = a->timeout_ms;
	if (a->ja < 0) {
		/* The user's language: PAM environment first, then ours. */
		const char *vars[] = {"LC_ALL", "LC_MESSAGES", "LANG"};
		for (i = 0; i < 3 && (lang == NULL || *lang == 0); i++) {
			lang = pam_getenv(pamh, vars[i]);
			if (lang == NULL || *lang == 0)
				lang = getenv(vars[i]);
		}
		a->ja = lang != NULL && strncmp(lang, "ja", 2) == 0;
	}
}

static int put_field(unsigned char *buf, size_t *off, const char *s)
{
	size_t n = s ? strlen(s) : 0;
	if (n > MAX_FIELD)
		return -1;
	buf[(*off)++] = (unsigned char)(n >> 8);
	buf[(*off)++] = (unsigned char)n;
	if (n)
		memcpy(buf + *off, s, n);
	*off += n;
	return 0;
}

/* wait_fd waits until fd is ready for events or the deadline passes. */
static int wait_fd(int fd, short events, long long deadline)
{
	for (;;) {
		struct pollfd p = {.fd = fd, .events = events};
		long long left = deadline - now_ms();
		int r;
		if (left <= 0)
			return -1;
		r = poll(&p, 1, left > INT_MAX ? INT_MAX : (int)left);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		return 0;
	}
}

static int write_all(int fd, const unsigned char *p, size_t n, long long deadline)
{
	while (n > 0) {
		ssize_t k;
		if (wait_fd(fd, POLLOUT, deadline) != 0)
			return -1;
		k = send(fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (k < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK))
			continue;
		if (k <= 0)
			return -1;
		p += k, n -= (size_t)k;
	}
	return 0;
}

static int read_all(int fd, unsigned char *p, size_t n, long long deadline)
{
	while (n > 0) {
		ssize_t k;
		if (wait_fd(fd, POLLIN, deadline) != 0)
			return -1;
		k = recv(fd, p, n, MSG_DONTWAIT);
		if (k < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK))
			continue;
		if (k <= 0)
			return -1;
		p += k, n -= (size_t)k;
	}
	return 0;
}

/* fold_fullwidth rewrites, in place, the full-width forms of ASCII
 * (U+FF01..U+FF5E, what a Japanese input method types: "８８７６８７") as
 * ASCII and the ideographic space U+3000 as a space — the part of NFKC
 * that codes need, so the break-glass path (no agent) accepts them too.
 * The agent applies full NFKC to what it receives (localapi.NormalizeCode). */
static void fold_fullwidth(char *s)
{
	unsigned char *r = (unsigned char *)s, *w = (unsigned char *)s;
	while (*r) {
		if (r[0] == 0xEF && (r[1] == 0xBC || r[1] == 0xBD) && r[2] >= 0x80 && r[2] <= 0xBF) {
			unsigned int cp = 0xF000u | ((unsigned)(r[1] & 0x3F) << 6) | (r[2] & 0x3F);
			if (cp >= 0xFF01 && cp <= 0xFF5E) {
				*w++ = (unsigned char)(cp - 0xFEE0);
				r += 3;
				continue;
			}
		}
		if (r[0] == 0xE3 && r[1] == 0x80 && r[2] == 0x80) {
			*w++ = ' ';
			r += 3;
			continue;
		}
		*w++ = *r++;
	}
	*w = 0;
}

/* ask_agent sends one version-2 request (op, method) and returns the
 * answer byte (a verdict for OP_VERIFY, a method for OP_METHOD), or
 * V_UNREACHABLE when there is no well-formed answer. */
static int ask_agent(struct args *a, int op, int method, const char *user, const char *service,
		     const char *rhost, const char *code)
{
	unsigned char req[4 + 3 + 4 * (2 + MAX_FIELD)], ans[6];
	size_t off = 4;
	struct sockaddr_un sa;
	struct timeval tv;
	long long start = now_ms(), deadline = start + a->budget_ms;
	int fd, v;

	req[off++] = 2;
	req[off++] = (unsigned char)op;
	req[off++] = (unsigned char)method;
	if (put_field(req, &off, user) || put_field(req, &off, service) || put_field(req, &off, rhost) ||
	    put_field(req, &off, code))
		return op == OP_VERIFY ? V_DENY : V_UNREACHABLE;
	req[0] = (unsigned char)((off - 4) >> 24), req[1] = (unsigned char)((off - 4) >> 16);
	req[2] = (unsigned char)((off - 4) >> 8), req[3] = (unsigned char)(off - 4);

	memset(&sa, 0, sizeof sa);
	sa.sun_family = AF_UNIX;
	if (strlen(a->socket) >= sizeof sa.sun_path)
		return V_UNREACHABLE;
	strcpy(sa.sun_path, a->socket);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return V_UNREACHABLE;
	/* connect() on a unix socket waits (for a full backlog) up to
	 * SO_SNDTIMEO; the rest waits in poll() until the deadline. */
	tv.tv_sec = a->budget_ms / 1000;
	tv.tv_usec = (a->budget_ms % 1000) * 1000;
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
	v = V_UNREACHABLE;
	if (a->budget_ms > 0 && connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0 && write_all(fd, req, off, deadline) == 0 &&
	    read_all(fd, ans, sizeof ans, deadline) == 0 && ans[0] == 0 && ans[1] == 0 && ans[2] == 0 && ans[3] == 2 &&
	    ans[4] == 2) {
		if (op == OP_METHOD)
			v = ans[5] == M_PIN ? M_PIN : M_TOTP;
		else /* anything but allow or locked is a denial: fail closed */
			v = ans[5] == V_ALLOW ? V_ALLOW : ans[5] == V_LOCKED ? V_LOCKED : V_DENY;
	}
	memset(req, 0, sizeof req);
	close(fd);
	a->budget_ms -= now_ms() - start;
	if (a->budget_ms < 0)
		a->budget_ms = 0;
	return v;
}

/* used_field copies s into dst (n bytes) for one field of the .used
 * line: whitespace and control characters become '?', an empty or absent
 * value becomes "-", and it is cut to fit. */
static void used_field(char *dst, size_t n, const char *s)
{
	size_t i = 0;
	if (s != NULL)
		for (; s[i] != 0 && i + 1 < n; i++)
			dst[i] = ((unsigned char)s[i] <= ' ' || s[i] == 0x7f) ? '?' : s[i];
	if (i == 0 && n > 1)
		dst[i++] = '-';
	dst[i] = 0;
}

/* b64raw decodes unpadded standard base64 (Go's RawStdEncoding, strict:
 * no padding, no stray bits); the length, or -1. */
static int b64raw(const char *s, size_t n, unsigned char *out, size_t max)
{
	static const char A[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	unsigned int acc = 0;
	int bits = 0;
	size_t i, o = 0;
	if (n % 4 == 1)
		return -1;
	for (i = 0; i < n; i++) {
		const char *p = s[i] ? strchr(A, s[i]) : NULL;
		if (p == NULL)
			return -1;
		acc = (acc << 6) | (unsigned int)(p - A);
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			if (o >= max)
				return -1;
			out[o++] = (unsigned char)(acc >> bits);
			acc &= (1u << bits) - 1;
		}
	}
	if (acc != 0) /* non-canonical trailing bits */
		return -1;
	return (int)o;
}

/* argon2id_hash_raw from libargon2.so.1 (Debian: libargon2-1), loaded on
 * first use: the module links nothing beyond libc and libpam, and a
 * terminal without the library refuses argon2id codes when the agent is
 * down (fail closed) and says so in the log. */
typedef int (*argon2id_fn)(uint32_t t, uint32_t m, uint32_t p, const void *pwd, size_t pwdlen,
			   const void *salt, size_t saltlen, void *hash, size_t hashlen);

static argon2id_fn load_argon2(pam_handle_t *pamh)
{
	static argon2id_fn fn;
	void *h;
	if (fn)
		return fn;
	h = dlopen("libargon2.so.1", RTLD_NOW | RTLD_LOCAL);
	if (h)
		fn = (argon2id_fn)dlsym(h, "argon2id_hash_raw");
	if (!fn)
		pam_syslog(pamh, LOG_ERR, "libargon2.so.1 not loadable (Debian: libargon2-1): argon2id recovery codes cannot be checked while the agent is down");
	return fn;
}

/* kdf_match checks norm against "$argon2id$v=19$m=M,t=T,p=P$SALT$KEY"
 * within the bounds agent/mfa and internal/mfabundle accept (so a hostile
 * file cannot make a login spend seconds or gigabytes); 1 on a match. */
static int kdf_match(pam_handle_t *pamh, const char *h, const char *norm)
{
	unsigned int m, t, p;
	int consumed = 0, sl, kl;
	const char *salt, *key;
	unsigned char sb[64], kb[64], got[64];
	char canon[64];
	argon2id_fn fn;
	if (sscanf(h, "$argon2id$v=19$m=%u,t=%u,p=%u$%n", &m, &t, &p, &consumed) != 3 || consumed == 0)
		return 0;
	/* The parameters exactly as written (no "+1", "01", spaces). */
	if (snprintf(canon, sizeof canon, "$argon2id$v=19$m=%u,t=%u,p=%u$", m, t, p) != consumed ||
	    strncmp(canon, h, (size_t)consumed) != 0)
		return 0;
	if (m < 8 || m > 64 * 1024 || t < 1 || t > 8 || p < 1 || p > 4)
		return 0;
	salt = h + consumed;
	key = strchr(salt, '$');
	if (key == NULL || strchr(key + 1, '$') != NULL)
		return 0;
	sl = b64raw(salt, (size_t)(key - salt), sb, sizeof sb);
	kl = b64raw(key + 1, strlen(key + 1), kb, sizeof kb);
	if (sl < 8 || kl < 16)
		return 0;
	/* The salt's first byte is the code's tag (internal/mfabundle
	 * codeTag): another code's hash is skipped without the KDF. */
	{
		static const char dom[] = "mamori code tag v1";
		struct sha256 s;
		unsigned char tag[32];
		sha256_init(&s);
		sha256_update(&s, (const unsigned char *)dom, sizeof dom); /* with its NUL */
		sha256_update(&s, (const unsigned char *)norm, CODE_LEN);
		sha256_final(&s, tag);
		if (tag[0] != sb[0])
			return 0;
	}
	if ((fn = load_argon2(pamh)) == NULL)
		return 0;
	if (fn(t, m, p, norm, CODE_LEN, sb, (size_t)sl, got, (size_t)kl) != 0)
		return 0;
	{
		unsigned char d = 0;
		int i;
		for (i = 0; i < kl; i++)
			d |= (unsigned char)(got[i] ^ kb[i]);
		memset(got, 0, sizeof got);
		return d == 0;
	}
}

/* breakglass consumes user's recovery code from the file; 1 if used. The
 * used code's line in PATH.used also says who, through which service,
 * from where and when, so the agent can report the login as an event
 * when it is back (breakglass.go, ReportBreakGlass). */
static int breakglass(pam_handle_t *pamh, const struct args *a, const char *user, const char *code,
		      const char *service, const char *rhost)
{
	char norm[CODE_LEN + 1], path[PATH_MAX], *data = NULL, *line, *next;
	char found[MAX_HASH + 1] = {0};
	struct stat st;
	int lock = -1, fd = -1, ok = 0;
	ssize_t n;
	FILE *tmpf = NULL;

	if (normalise_code(code, norm) != 0)
		return 0;
	if (snprintf(path, sizeof path, "%s.lock", a->breakglass) >= (int)sizeof path)
		return 0;
	lock = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (lock < 0 || flock(lock, LOCK_EX) != 0)
		goto out;
	fd = open(a->breakglass, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0 || fstat(fd, &st) != 0)
		goto out;
	if (!S_ISREG(st.st_mode) || st.st_uid != 0 || (st.st_mode & 077) != 0 || st.st_size > MAX_FILE) {
		pam_syslog(pamh, LOG_ERR, "break-glass file %s is not a root-only regular file; ignored", a->breakglass);
		goto out;
	}
	data = calloc(1, (size_t)st.st_size + 1);
	if (data == NULL || (n = read(fd, data, (size_t)st.st_size)) != st.st_size)
		goto out;

	/* Find the line; the others go to the new file. */
	if (snprintf(path, sizeof path, "%s.tmpXXXXXX", a->breakglass) >= (int)sizeof path)
		goto out;
	{
		int tfd = mkostemp(path, O_CLOEXEC);
		if (tfd < 0)
			goto out;
		fchmod(tfd, 0600);
		tmpf = fdopen(tfd, "w");
		if (tmpf == NULL) {
			close(tfd);
			unlink(path);
			goto out;
		}
	}
	for (line = data; line && *line; line = next) {
		char u[MAX_FIELD + 1], salt_hex[129], hash_hex[MAX_HASH + 1], mine[65];
		unsigned char salt[64], dig[32];
		struct sha256 s;
		size_t sl;
		int i;
		next = strchr(line, '\n');
		if (next)
			*next++ = 0;
		if (!found[0] && line[0] != '#' && sscanf(line, "%256s %128s %200s", u, salt_hex, hash_hex) == 3 &&
		    strcmp(u, user) == 0 && strncmp(hash_hex, "$argon2id$", 10) == 0) {
			if (kdf_match(pamh, hash_hex, norm)) {
				memcpy(found, hash_hex, strlen(hash_hex) + 1);
				continue;
			}
		} else if (!found[0] && line[0] != '#' && sscanf(line, "%256s %128s %200s", u, salt_hex, hash_hex) == 3 &&
		    strcmp(u, user) == 0 && (sl = strlen(salt_hex)) % 2 == 0 && strlen(hash_hex) == 64 &&
		    unhex(salt_hex, sl, salt) == 0) {
			sha256_init(&s);
			sha256_update(&s, salt, sl / 2);
			sha256_update(&s, (const unsigned char *)norm, CODE_LEN);
			sha256_final(&s, dig);
			for (i = 0; i < 32; i++)
				sprintf(mine + 2 * i, "%02x", dig[i]);
			if (equal_ct(mine, hash_hex, 64)) {
				memcpy(found, hash_hex, 65);
				continue;
			}
		}
		fprintf(tmpf, "%s\n", line);
	}
	if (found[0]) {
		char used[PATH_MAX];
		int ufd;
		/* The used list first: a crash between the two leaves the code used. */
		char fu[65], fs[65], fr[129];
		int want;
		used_field(fu, sizeof fu, user);
		used_field(fs, sizeof fs, service);
		used_field(fr, sizeof fr, rhost);
		want = snprintf(NULL, 0, "%s %s %s %s %lld\n", found, fu, fs, fr, (long long)time(NULL));
		if (snprintf(used, sizeof used, "%s.used", a->breakglass) < (int)sizeof used &&
		    (ufd = open(used, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600)) >= 0) {
			if (dprintf(ufd, "%s %s %s %s %lld\n", found, fu, fs, fr, (long long)time(NULL)) == want &&
			    fsync(ufd) == 0 && fflush(tmpf) == 0 &&
			    fsync(fileno(tmpf)) == 0 && rename(path, a->breakglass) == 0)
				ok = 1;
			close(ufd);
		}
	}
	fclose(tmpf);
	if (!ok)
		unlink(path);
out:
	if (data) {
		memset(data, 0, (size_t)st.st_size);
		free(data);
	}
	memset(norm, 0, sizeof norm);
	if (fd >= 0)
		close(fd);
	if (lock >= 0)
		close(lock);
	return ok;
}

PAM_EXTERN int pam_sm_authenticate(pam_handle_t *pamh, int flags, int argc, const char **argv)
{
	struct args a;
	const char *user = NULL, *service = NULL, *rhost = NULL;
	char *code = NULL;
	const char *prompt;
	int v, rc, method;

	(void)flags;
	parse_args(pamh, argc, argv, &a);
	if (pam_get_user(pamh, &user, NULL) != PAM_SUCCESS || user == NULL || *user == 0)
		return PAM_USER_UNKNOWN;
	pam_get_item(pamh, PAM_SERVICE, (const void **)&service);
	pam_get_item(pamh, PAM_RHOST, (const void **)&rhost);

	/* Which factor? An unreachable agent means the TOTP prompt, whose
	 * answer can still be a break-glass recovery code. */
	method = ask_agent(&a, OP_METHOD, M_TOTP, user, service, rhost, "");
	if (method == M_PIN)
		prompt = a.ja ? "PIN（または回復コード）: " : "PIN (or recovery code): ";
	else
		prompt = a.ja ? "確認コード（認証アプリ）または回復コード: "
			      : "Verification code (authenticator app) or recovery code: ";
	rc = pam_prompt(pamh, PAM_PROMPT_ECHO_OFF, &code, "%s", prompt);
	if (rc != PAM_SUCCESS || code == NULL)
		return PAM_CONV_ERR;
	if (method != M_PIN)
		fold_fullwidth(code);

	v = ask_agent(&a, OP_VERIFY, method == M_PIN ? M_PIN : M_TOTP, user, service, rhost, code);
	if (v == V_UNREACHABLE) {
		pam_syslog(pamh, LOG_ERR, "mamori-agent unreachable at %s: denying (recovery codes still work)", a.socket);
		if (breakglass(pamh, &a, user, code, service, rhost)) {
			pam_syslog(pamh, LOG_NOTICE, "break-glass recovery code used for %s", user);
			v = V_ALLOW;
		} else {
			v = V_DENY;
		}
	}
	memset(code, 0, strlen(code));
	free(code);
	switch (v) {
	case V_ALLOW:
		return PAM_SUCCESS;
	case V_LOCKED:
		pam_error(pamh, "%s", a.ja ? "失敗が続いたため一時的にロックされています。しばらく待つか、ヘルプデスクに連絡してください。"
				       : "Locked after too many failures: wait, or call the helpdesk.");
		return PAM_MAXTRIES;
	default:
		return PAM_AUTH_ERR;
	}
}

PAM_EXTERN int pam_sm_setcred(pam_handle_t *pamh, int flags, int argc, const char **argv)
{
	(void)pamh, (void)flags, (void)argc, (void)argv;
	return PAM_SUCCESS;
}
