/*
 * pambench — the latency benchmark's PAM driver (test scaffolding, not
 * product). It runs N logins in one process, each pam_start, pam_set_item
 * (rhost), pam_authenticate, pam_end, exactly what sshd or login do per
 * attempt, and prints each login's wall time in nanoseconds, one per line.
 * No process is spawned per login, so the figures are the PAM stack, the
 * module, its socket round trips and the agent's verifier.
 *
 * usage: pambench SERVICE USER ANSWERS_FILE N
 * ANSWERS_FILE holds one answer per line; login i answers every prompt
 * with line i (mod the number of lines). Exit 1 if any login fails.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <security/pam_appl.h>

static char **answers;
static int nanswers, cur;

static int conv(int n, const struct pam_message **msg, struct pam_response **resp, void *data)
{
	struct pam_response *r = calloc((size_t)n, sizeof *r);
	int i;
	(void)data;
	if (r == NULL)
		return PAM_BUF_ERR;
	for (i = 0; i < n; i++)
		if (msg[i]->msg_style == PAM_PROMPT_ECHO_OFF || msg[i]->msg_style == PAM_PROMPT_ECHO_ON)
			r[i].resp = strdup(answers[cur % nanswers]);
	*resp = r;
	return PAM_SUCCESS;
}

int main(int argc, char **argv)
{
	struct pam_conv c = {conv, NULL};
	char line[512];
	FILE *f;
	long n, i;
	int failed = 0;

	if (argc != 5)
		return 2;
	f = fopen(argv[3], "r");
	if (f == NULL)
		return 2;
	while (fgets(line, sizeof line, f)) {
		line[strcspn(line, "\n")] = 0;
		answers = realloc(answers, sizeof *answers * (size_t)(nanswers + 1));
		answers[nanswers++] = strdup(line);
	}
	fclose(f);
	if (nanswers == 0)
		return 2;
	n = atol(argv[4]);
	for (i = 0; i < n; i++) {
		struct timespec a, b;
		pam_handle_t *h = NULL;
		int rc;
		cur = (int)i;
		clock_gettime(CLOCK_MONOTONIC, &a);
		rc = pam_start(argv[1], argv[2], &c, &h);
		if (rc == PAM_SUCCESS) {
			pam_set_item(h, PAM_RHOST, "192.0.2.7");
			rc = pam_authenticate(h, PAM_SILENT);
			pam_end(h, rc);
		}
		clock_gettime(CLOCK_MONOTONIC, &b);
		if (rc != PAM_SUCCESS)
			failed++;
		printf("%lld\n", (long long)(b.tv_sec - a.tv_sec) * 1000000000LL + (b.tv_nsec - a.tv_nsec));
	}
	return failed ? 1 : 0;
}
