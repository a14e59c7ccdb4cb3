/*
 * standin.exe — a LogonUI stand-in for tests (never shipped). It loads
 * mamori-cp.dll the way LogonUI does, through COM (CoCreateInstance of
 * the registered CLSID, so the registration is exercised too), and drives
 * the documented call sequence:
 *
 *   SetUsageScenario, Advise, GetFieldDescriptorCount/At,
 *   GetCredentialCount, GetCredentialAt, (credential) Advise, SetSelected,
 *   SetStringValue ×3, GetSerialization, ReportResult, UnAdvise, Release.
 *
 * Commands (one per run; results on stdout, one line each):
 *
 *   standin logon|unlock USER PASSWORD CODE
 *       RESULT cpgsr=N hr=0x… user=HEX domain=HEX password=HEX msgtype=N
 *              pkg=N clsid=ok|bad status=HEX load_us=N check_us=N
 *       (strings as hex of UTF-8; a serialization is unpacked with
 *       cpcore's bounds-checked reader)
 *   standin filter logon|unlock|credui
 *       FILTER inbox=0|1 mamori=0|1 thirdparty=0|1: what the filter lets
 *       through of the in-box password provider, mamori's provider and a
 *       third-party one
 *   standin bench N USER PASSWORD CODE
 *       BENCH n=N p50_us=… p99_us=… max_us=… (GetSerialization, each a
 *       method? and a verify round trip through the agent's pipe)
 *   standin dllload DLL
 *       DLLLOAD us=…: what the DLL itself adds to LogonUI's start, COM
 *       already up: LoadLibrary, DllGetClassObject, CreateInstance,
 *       SetUsageScenario, the field descriptors, the tile
 *   standin bgbench PASSWORD USER1 CODES1 USER2 CODES2
 *       BGBENCH who=USER n=N allowed=N p50_us=… p99_us=… max_us=…, one
 *       line for each user: whole GetSerializations with the agent down
 *       (the break-glass check in the DLL: lock, read, the hash, the
 *       .used line, the rewrite), CODES comma-separated, USER1's i-th
 *       code then USER2's i-th, so the load falls on both alike
 *   standin kdfbench N USER CODE LINE1 LINE2
 *       KDFBENCH hash=1|2 n=N found=N p50_us=… p99_us=… max_us=…:
 *       cp_bg_take alone (no file) on a one-line break-glass file, the
 *       two lines in turn (an argon2id line and a SHA-256 one)
 *   standin pipebench N USER CODE PIPE [PIPE2…]
 *       PIPEBENCH n=N p50_us=… p99_us=… max_us=… connect_p99_us=…
 *       write_p99_us=… answer_p99_us=… close_p99_us=… busy=N: the code
 *       check alone, one verify request a connection, as the DLL sends
 *       it, with the p99 of each phase and how often the pipe was busy;
 *       PIPEBENCH2 … the same for PIPE2, and so on; ECHOBENCH … against a
 *       pipe a thread of this process serves with a fixed answer (no
 *       peer check, no verifier): wine's pipe transport alone, the
 *       baseline. Request i goes to every pipe before request i+1, so
 *       the machine's load falls on all of them alike.
 */
#define UNICODE
#define _UNICODE
#include <windows.h>
#include <objbase.h>
#include <shellapi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../cpcore.h"
#include "../cpdefs.h"

/* The in-box password provider (Windows 8 and later) and a made-up one. */
MAMORI_GUID(CLSID_PasswordProvider, 0x60b78e88, 0xead8, 0x445c, 0x9c, 0xfd, 0x0b, 0x87, 0xf7, 0x4e, 0xa6, 0xcd);
MAMORI_GUID(CLSID_ThirdParty, 0x11111111, 0x2222, 0x3333, 0x44, 0x44, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55);

/* ---- LogonUI's side of the events ---- */

static HRESULT STDMETHODCALLTYPE E_QI(ICredentialProviderCredentialEvents *This, REFIID riid, void **ppv)
{
	*ppv = This;
	(void)riid;
	return S_OK;
}
static ULONG STDMETHODCALLTYPE E_AddRef(ICredentialProviderCredentialEvents *This) { (void)This; return 2; }
static ULONG STDMETHODCALLTYPE E_Release(ICredentialProviderCredentialEvents *This) { (void)This; return 1; }
static int g_field_resets;
static HRESULT STDMETHODCALLTYPE E_SetFieldState(ICredentialProviderCredentialEvents *t, ICredentialProviderCredential *c,
						 DWORD id, CREDENTIAL_PROVIDER_FIELD_STATE s)
{
	(void)t, (void)c, (void)id, (void)s;
	return S_OK;
}
static HRESULT STDMETHODCALLTYPE E_SetFieldInteractiveState(ICredentialProviderCredentialEvents *t,
							    ICredentialProviderCredential *c, DWORD id,
							    CREDENTIAL_PROVIDER_FIELD_INTERACTIVE_STATE s)
{
	(void)t, (void)c, (void)id, (void)s;
	return S_OK;
}
static HRESULT STDMETHODCALLTYPE E_SetFieldString(ICredentialProviderCredentialEvents *t, ICredentialProviderCredential *c,
						  DWORD id, LPCWSTR s)
{
	(void)t, (void)c, (void)id;
	if (s && s[0] == 0)
		g_field_resets++;
	return S_OK;
}
static HRESULT STDMETHODCALLTYPE E_SetFieldCheckbox(ICredentialProviderCredentialEvents *t,
						    ICredentialProviderCredential *c, DWORD id, BOOL b, LPCWSTR l)
{
	(void)t, (void)c, (void)id, (void)b, (void)l;
	return S_OK;
}
static HRESULT STDMETHODCALLTYPE E_SetFieldBitmap(ICredentialProviderCredentialEvents *t, ICredentialProviderCredential *c,
						  DWORD id, HBITMAP h)
{
	(void)t, (void)c, (void)id, (void)h;
	return S_OK;
}
static HRESULT STDMETHODCALLTYPE E_Combo(ICredentialProviderCredentialEvents *t, ICredentialProviderCredential *c,
					 DWORD id, DWORD x)
{
	(void)t, (void)c, (void)id, (void)x;
	return S_OK;
}
static HRESULT STDMETHODCALLTYPE E_Append(ICredentialProviderCredentialEvents *t, ICredentialProviderCredential *c,
					  DWORD id, LPCWSTR s)
{
	(void)t, (void)c, (void)id, (void)s;
	return S_OK;
}
static HRESULT STDMETHODCALLTYPE E_OnCreatingWindow(ICredentialProviderCredentialEvents *t, HWND *h)
{
	(void)t;
	*h = NULL;
	return S_OK;
}
static const ICredentialProviderCredentialEventsVtbl EVENTS_VTBL = {
	E_QI, E_AddRef, E_Release, E_SetFieldState, E_SetFieldInteractiveState, E_SetFieldString, E_SetFieldCheckbox,
	E_SetFieldBitmap, E_Combo, E_Combo, E_Append, E_Combo, E_OnCreatingWindow,
};
static ICredentialProviderCredentialEvents g_events = {&EVENTS_VTBL};

static HRESULT STDMETHODCALLTYPE PE_QI(ICredentialProviderEvents *This, REFIID riid, void **ppv)
{
	*ppv = This;
	(void)riid;
	return S_OK;
}
static ULONG STDMETHODCALLTYPE PE_AddRef(ICredentialProviderEvents *This) { (void)This; return 2; }
static ULONG STDMETHODCALLTYPE PE_Release(ICredentialProviderEvents *This) { (void)This; return 1; }
static HRESULT STDMETHODCALLTYPE PE_CredentialsChanged(ICredentialProviderEvents *This, UINT_PTR ctx)
{
	(void)This, (void)ctx;
	return S_OK;
}
static const ICredentialProviderEventsVtbl PEVENTS_VTBL = {PE_QI, PE_AddRef, PE_Release, PE_CredentialsChanged};
static ICredentialProviderEvents g_pevents = {&PEVENTS_VTBL};

/* ---- helpers ---- */

static LONGLONG now_us(void)
{
	LARGE_INTEGER f, c;
	QueryPerformanceFrequency(&f);
	QueryPerformanceCounter(&c);
	return c.QuadPart * 1000000 / f.QuadPart;
}

static void print_hex_utf8(const char *name, const uint16_t *s, size_t n)
{
	char buf[4 * 4096 + 1];
	int k = cp_utf16_to_utf8(s, n, buf, sizeof buf), i;
	printf(" %s=", name);
	for (i = 0; i < k; i++)
		printf("%02x", (unsigned char)buf[i]);
}

static void print_hex_le(const char *name, const uint8_t *p, size_t units)
{
	uint16_t w[4096];
	size_t i;
	if (units > 4096)
		units = 4096;
	for (i = 0; i < units; i++)
		w[i] = (uint16_t)(p[2 * i] | p[2 * i + 1] << 8);
	print_hex_utf8(name, w, units);
}

/* hostile: "@repeat:N:C" stands for N copies of character C. Arguments
 * are taken as UTF-16 from the command line (not the ANSI argv), so a
 * Japanese password arrives as typed. */
static WCHAR *arg(const WCHAR *s)
{
	int n;
	WCHAR c;
	if (swscanf(s, L"@repeat:%d:%lc", &n, &c) == 2 && n > 0 && n < 1000000) {
		WCHAR *w = calloc((size_t)n + 1, sizeof(WCHAR));
		int i;
		for (i = 0; i < n; i++)
			w[i] = c;
		return w;
	}
	return _wcsdup(s);
}

static ICredentialProvider *load(LONGLONG *load_us)
{
	ICredentialProvider *p = NULL;
	LONGLONG t0 = now_us();
	HRESULT hr = CoCreateInstance(&MAMORI_CLSID_Provider, NULL, CLSCTX_INPROC_SERVER, &MAMORI_IID_ICredentialProvider,
				      (void **)&p);
	*load_us = now_us() - t0;
	if (FAILED(hr)) {
		printf("ERROR CoCreateInstance provider hr=0x%08lx\n", (unsigned long)hr);
		exit(2);
	}
	return p;
}

/* one_logon runs the whole sequence once; returns the GetSerialization
 * response and prints RESULT when print. */
static int one_logon(ICredentialProvider *p, CREDENTIAL_PROVIDER_USAGE_SCENARIO sc, const WCHAR *user,
		     const WCHAR *pass, const WCHAR *code, int print, LONGLONG load_us, LONGLONG *check_us)
{
	DWORD n = 0, i, count = 0, def = 0;
	BOOL autologon = TRUE;
	ICredentialProviderCredential *c = NULL;
	CREDENTIAL_PROVIDER_GET_SERIALIZATION_RESPONSE r = 99;
	CREDENTIAL_PROVIDER_CREDENTIAL_SERIALIZATION cs;
	CREDENTIAL_PROVIDER_STATUS_ICON icon = CPSI_NONE;
	LPWSTR status = NULL;
	HRESULT hr;
	LONGLONG t0;

	if (FAILED(hr = p->lpVtbl->SetUsageScenario(p, sc, 0))) {
		printf("ERROR SetUsageScenario hr=0x%08lx\n", (unsigned long)hr);
		exit(2);
	}
	p->lpVtbl->Advise(p, &g_pevents, 42);
	p->lpVtbl->GetFieldDescriptorCount(p, &n);
	for (i = 0; i < n; i++) {
		CREDENTIAL_PROVIDER_FIELD_DESCRIPTOR *d = NULL;
		if (SUCCEEDED(p->lpVtbl->GetFieldDescriptorAt(p, i, &d)) && d) {
			CoTaskMemFree(d->pszLabel);
			CoTaskMemFree(d);
		}
	}
	if (FAILED(p->lpVtbl->GetCredentialCount(p, &count, &def, &autologon)) || count != 1 || autologon) {
		printf("ERROR GetCredentialCount count=%lu autologon=%d\n", (unsigned long)count, autologon);
		exit(2);
	}
	if (FAILED(p->lpVtbl->GetCredentialAt(p, 0, &c)) || c == NULL) {
		printf("ERROR GetCredentialAt\n");
		exit(2);
	}
	c->lpVtbl->Advise(c, &g_events);
	c->lpVtbl->SetSelected(c, &autologon);
	for (i = 0; i < n; i++) {
		CREDENTIAL_PROVIDER_FIELD_STATE st;
		CREDENTIAL_PROVIDER_FIELD_INTERACTIVE_STATE ist;
		LPWSTR s = NULL;
		c->lpVtbl->GetFieldState(c, i, &st, &ist);
		if (SUCCEEDED(c->lpVtbl->GetStringValue(c, i, &s)))
			CoTaskMemFree(s);
	}
	c->lpVtbl->SetStringValue(c, 1, user);
	c->lpVtbl->SetStringValue(c, 2, pass);
	c->lpVtbl->SetStringValue(c, 3, code);
	memset(&cs, 0, sizeof cs);
	t0 = now_us();
	hr = c->lpVtbl->GetSerialization(c, &r, &cs, &status, &icon);
	*check_us = now_us() - t0;
	if (print) {
		struct cp_kerb k;
		printf("RESULT cpgsr=%d hr=0x%08lx icon=%d", (int)r, (unsigned long)hr, (int)icon);
		if (r == CPGSR_RETURN_CREDENTIAL_FINISHED) {
			if (cs.rgbSerialization == NULL || cp_unpack_kerb(cs.rgbSerialization, cs.cbSerialization, &k) != 0) {
				printf(" unpack=bad");
			} else {
				print_hex_le("user", k.user, k.ulen);
				print_hex_le("domain", k.domain, k.dlen);
				print_hex_le("password", k.password, k.plen);
				printf(" msgtype=%u size=%lu", k.msgtype, (unsigned long)cs.cbSerialization);
			}
			printf(" pkg=%lu clsid=%s", (unsigned long)cs.ulAuthenticationPackage,
			       IsEqualGUID(&cs.clsidCredentialProvider, &MAMORI_CLSID_Provider) ? "ok" : "bad");
		}
		if (status)
			print_hex_utf8("status", (const uint16_t *)status, 4096);
		printf(" resets=%d load_us=%lld check_us=%lld\n", g_field_resets, (long long)load_us, (long long)*check_us);
	}
	if (cs.rgbSerialization) {
		SecureZeroMemory(cs.rgbSerialization, cs.cbSerialization);
		CoTaskMemFree(cs.rgbSerialization);
	}
	if (status)
		CoTaskMemFree(status);
	c->lpVtbl->ReportResult(c, 0, 0, &status, &icon);
	c->lpVtbl->UnAdvise(c);
	c->lpVtbl->Release(c);
	p->lpVtbl->UnAdvise(p);
	return (int)r;
}

/* next_code cuts the next comma-separated item off *rest; NULL at the end. */
static WCHAR *next_code(WCHAR **rest)
{
	WCHAR *s = *rest, *e;
	if (s == NULL || *s == 0)
		return NULL;
	e = wcschr(s, L',');
	if (e) {
		*e = 0;
		*rest = e + 1;
	} else {
		*rest = s + wcslen(s);
	}
	return s;
}

static int cmp_ll(const void *a, const void *b)
{
	LONGLONG x = *(const LONGLONG *)a, y = *(const LONGLONG *)b;
	return x < y ? -1 : x > y;
}

/* ---- pipe benchmarks ---- */

/* The phases of one request, in µs. */
enum { PH_TOTAL, PH_CONNECT, PH_WRITE, PH_ANSWER, PH_CLOSE, PH_N };

struct series {
	const char *label;
	const WCHAR *pipe;
	LONGLONG *t[PH_N];
	long busy;
};

/* one_request opens the pipe as the DLL does (a busy pipe polled every
 * 10 ms), sends req, reads the 6-byte answer and closes, timing each
 * phase into s at index i. */
static int one_request(struct series *s, int i, const uint8_t *req, size_t len)
{
	LONGLONG t0 = now_us(), t1, t2, t3, t4;
	DWORD w = 0, r = 0, got = 0;
	uint8_t ans[6];
	HANDLE h;
	/* Busy: poll for up to 5 s (wine's WaitNamedPipeW can ignore its timeout). */
	for (int tries = 0;; tries++) {
		h = CreateFileW(s->pipe, GENERIC_READ | GENERIC_WRITE, 0, NULL, OPEN_EXISTING, 0, NULL);
		if (h != INVALID_HANDLE_VALUE || GetLastError() != ERROR_PIPE_BUSY || tries >= 500)
			break;
		s->busy++;
		Sleep(10);
	}
	if (h == INVALID_HANDLE_VALUE) {
		printf("ERROR pipe %lu\n", (unsigned long)GetLastError());
		return 2;
	}
	t1 = now_us();
	WriteFile(h, req, (DWORD)len, &w, NULL);
	t2 = now_us();
	while (got < sizeof ans && ReadFile(h, ans + got, (DWORD)(sizeof ans - got), &r, NULL) && r > 0)
		got += r;
	t3 = now_us();
	CloseHandle(h);
	t4 = now_us();
	s->t[PH_TOTAL][i] = t4 - t0, s->t[PH_CONNECT][i] = t1 - t0, s->t[PH_WRITE][i] = t2 - t1;
	s->t[PH_ANSWER][i] = t3 - t2, s->t[PH_CLOSE][i] = t4 - t3;
	if (got != sizeof ans || cp_answer(ans, sizeof ans, CP_OP_VERIFY) == CP_UNREACHABLE) {
		printf("ERROR answer\n");
		return 2;
	}
	return 0;
}

/* pipebench sends n requests to each of the k pipes in turn — request i
 * to every pipe, in a turning order, before request i+1 — so that
 * whatever else the machine is doing falls on all of them alike, and prints one line a pipe:
 * total p50/p99/max, the p99 of each phase (connect, write, answer,
 * close) and how often the pipe was busy. */
static int pipebench(struct series *s, int k, int n, const uint8_t *req, size_t len)
{
	int i, j, ph;
	if (n < 1 || n > 100000)
		return 2;
	for (j = 0; j < k; j++)
		for (ph = 0; ph < PH_N; ph++)
			if ((s[j].t[ph] = calloc((size_t)n, sizeof(LONGLONG))) == NULL)
				return 2;
	for (i = 0; i < n; i++)
		for (j = 0; j < k; j++) /* the order turns, so no pipe always follows the same one */
			if (one_request(&s[(i + j) % k], i, req, len) != 0)
				return 2;
	for (j = 0; j < k; j++) {
		LONGLONG **t = s[j].t;
		for (ph = 0; ph < PH_N; ph++)
			qsort(t[ph], (size_t)n, sizeof(LONGLONG), cmp_ll);
#define P99(a) ((long long)(a)[(n * 99) / 100 < n ? (n * 99) / 100 : n - 1])
		printf("%s n=%d p50_us=%lld p99_us=%lld max_us=%lld connect_p99_us=%lld write_p99_us=%lld "
		       "answer_p99_us=%lld close_p99_us=%lld busy=%ld\n",
		       s[j].label, n, (long long)t[PH_TOTAL][n / 2], P99(t[PH_TOTAL]), (long long)t[PH_TOTAL][n - 1],
		       P99(t[PH_CONNECT]), P99(t[PH_WRITE]), P99(t[PH_ANSWER]), P99(t[PH_CLOSE]), s[j].busy);
#undef P99
		for (ph = 0; ph < PH_N; ph++)
			free(t[ph]);
	}
	return 0;
}

static HANDLE g_echo_ready;

static HANDLE echo_instance(const WCHAR *name)
{
	return CreateNamedPipeW(name, PIPE_ACCESS_DUPLEX, PIPE_TYPE_BYTE | PIPE_READMODE_BYTE | PIPE_WAIT, PIPE_UNLIMITED_INSTANCES,
				4096, 4096, 0, NULL);
}

/* echo_server answers every request on its pipe with a fixed "deny", the
 * way the agent's pipe does (an instance waits for the next client while
 * one is served), doing nothing else: no peer check, no verifier. */
static DWORD WINAPI echo_server(void *arg)
{
	const WCHAR *name = arg;
	HANDLE next = echo_instance(name);
	static const uint8_t deny[6] = {0, 0, 0, 2, 2, 1};
	SetEvent(g_echo_ready);
	while (next != INVALID_HANDLE_VALUE) {
		HANDLE h = next;
		uint8_t buf[CP_MAX_REQUEST + 4];
		DWORD r = 0, w = 0;
		if (!ConnectNamedPipe(h, NULL) && GetLastError() != ERROR_PIPE_CONNECTED)
			break;
		next = echo_instance(name);
		ReadFile(h, buf, sizeof buf, &r, NULL);
		WriteFile(h, deny, sizeof deny, &w, NULL);
		FlushFileBuffers(h);
		DisconnectNamedPipe(h);
		CloseHandle(h);
	}
	return 0;
}

int main(int argc, char **argv)
{
	LONGLONG load_us = 0, check_us = 0;
	int wargc = 0;
	WCHAR **wargv = CommandLineToArgvW(GetCommandLineW(), &wargc);
	setvbuf(stdout, NULL, _IONBF, 0);
	if (wargv == NULL || wargc != argc)
		return 2;
	if (argc < 2) {
		fprintf(stderr, "usage: standin logon|unlock|filter|bench …\n");
		return 2;
	}
	if (FAILED(CoInitializeEx(NULL, COINIT_APARTMENTTHREADED)))
		return 2;
	if ((strcmp(argv[1], "logon") == 0 || strcmp(argv[1], "unlock") == 0) && argc == 5) {
		ICredentialProvider *p = load(&load_us);
		one_logon(p, strcmp(argv[1], "unlock") == 0 ? CPUS_UNLOCK_WORKSTATION : CPUS_LOGON, arg(wargv[2]),
			  arg(wargv[3]), arg(wargv[4]), 1, load_us, &check_us);
		p->lpVtbl->Release(p);
	} else if (strcmp(argv[1], "filter") == 0 && argc == 3) {
		ICredentialProviderFilter *f = NULL;
		GUID ids[3];
		BOOL allow[3] = {TRUE, TRUE, TRUE};
		CREDENTIAL_PROVIDER_USAGE_SCENARIO sc = strcmp(argv[2], "unlock") == 0	 ? CPUS_UNLOCK_WORKSTATION
							: strcmp(argv[2], "credui") == 0 ? CPUS_CREDUI
											 : CPUS_LOGON;
		HRESULT hr = CoCreateInstance(&MAMORI_CLSID_Filter, NULL, CLSCTX_INPROC_SERVER,
					      &MAMORI_IID_ICredentialProviderFilter, (void **)&f);
		if (FAILED(hr)) {
			printf("ERROR CoCreateInstance filter hr=0x%08lx\n", (unsigned long)hr);
			return 2;
		}
		ids[0] = CLSID_PasswordProvider, ids[1] = MAMORI_CLSID_Provider, ids[2] = CLSID_ThirdParty;
		hr = f->lpVtbl->Filter(f, sc, 0, ids, allow, 3);
		printf("FILTER hr=0x%08lx inbox=%d mamori=%d thirdparty=%d\n", (unsigned long)hr, allow[0], allow[1],
		       allow[2]);
		f->lpVtbl->Release(f);
	} else if (strcmp(argv[1], "bench") == 0 && argc == 6) {
		int n = atoi(argv[2]), i;
		LONGLONG *t;
		ICredentialProvider *p;
		if (n < 1 || n > 100000)
			return 2;
		t = calloc((size_t)n, sizeof *t);
		p = load(&load_us);
		for (i = 0; i < n; i++)
			one_logon(p, CPUS_LOGON, arg(wargv[3]), arg(wargv[4]), arg(wargv[5]), 0, 0, &t[i]);
		qsort(t, (size_t)n, sizeof *t, cmp_ll);
		printf("BENCH n=%d p50_us=%lld p99_us=%lld max_us=%lld load_us=%lld\n", n, (long long)t[n / 2],
		       (long long)t[(n * 99) / 100 < n ? (n * 99) / 100 : n - 1], (long long)t[n - 1], (long long)load_us);
		p->lpVtbl->Release(p);
	} else if (strcmp(argv[1], "bgbench") == 0 && argc == 7) {
		static LONGLONG t[2][1000];
		int allowed[2] = {0, 0}, n[2] = {0, 0}, k;
		WCHAR *rest[2], *tok[2];
		ICredentialProvider *p = load(&load_us);
		rest[0] = wargv[4], rest[1] = wargv[6];
		tok[0] = next_code(&rest[0]);
		tok[1] = next_code(&rest[1]);
		while ((tok[0] || tok[1]) && n[0] < 1000 && n[1] < 1000) {
			for (k = 0; k < 2; k++) {
				if (tok[k] == NULL)
					continue;
				if (one_logon(p, CPUS_LOGON, wargv[3 + 2 * k], wargv[2], tok[k], 0, 0, &t[k][n[k]]) ==
				    CPGSR_RETURN_CREDENTIAL_FINISHED)
					allowed[k]++;
				n[k]++;
				tok[k] = next_code(&rest[k]);
			}
		}
		for (k = 0; k < 2; k++) {
			if (n[k] == 0)
				continue;
			qsort(t[k], (size_t)n[k], sizeof t[k][0], cmp_ll);
			printf("BGBENCH who=%s n=%d allowed=%d p50_us=%lld p99_us=%lld max_us=%lld\n", argv[3 + 2 * k], n[k],
			       allowed[k], (long long)t[k][n[k] / 2], (long long)t[k][(n[k] * 99) / 100], (long long)t[k][n[k] - 1]);
		}
		p->lpVtbl->Release(p);
	} else if (strcmp(argv[1], "kdfbench") == 0 && argc == 7) {
		int n = atoi(argv[2]), i, k, found[2] = {0, 0};
		LONGLONG *t[2];
		char norm[11], keep[512], hash[CP_BG_MAX_HASH + 1];
		if (n < 1 || n > 100000 || cp_normalise_code(argv[4], norm) != 0)
			return 2;
		t[0] = calloc((size_t)n, sizeof(LONGLONG)), t[1] = calloc((size_t)n, sizeof(LONGLONG));
		for (i = 0; i < n; i++)
			for (k = 0; k < 2; k++) {
				size_t kl = 0;
				LONGLONG t0 = now_us();
				found[k] += cp_bg_take(argv[5 + k], strlen(argv[5 + k]), argv[3], norm, keep, sizeof keep, &kl,
						       hash) == 1;
				t[k][i] = now_us() - t0;
			}
		for (k = 0; k < 2; k++) {
			qsort(t[k], (size_t)n, sizeof(LONGLONG), cmp_ll);
			printf("KDFBENCH hash=%d n=%d found=%d p50_us=%lld p99_us=%lld max_us=%lld\n", k + 1, n, found[k],
			       (long long)t[k][n / 2], (long long)t[k][(n * 99) / 100], (long long)t[k][n - 1]);
		}
	} else if (strcmp(argv[1], "dllload") == 0 && argc == 3) {
		typedef HRESULT(WINAPI * getclass_fn)(REFCLSID, REFIID, void **);
		LONGLONG t0 = now_us();
		HMODULE m = LoadLibraryW(wargv[2]);
		getclass_fn get = m ? (getclass_fn)(void *)GetProcAddress(m, "DllGetClassObject") : NULL;
		IClassFactory *f = NULL;
		ICredentialProvider *p = NULL;
		DWORD n = 0, i, count = 0, def = 0;
		BOOL al = FALSE;
		ICredentialProviderCredential *c = NULL;
		if (get == NULL || FAILED(get(&MAMORI_CLSID_Provider, &IID_IClassFactory, (void **)&f)) ||
		    FAILED(f->lpVtbl->CreateInstance(f, NULL, &MAMORI_IID_ICredentialProvider, (void **)&p)) ||
		    FAILED(p->lpVtbl->SetUsageScenario(p, CPUS_LOGON, 0))) {
			printf("ERROR dllload\n");
			return 2;
		}
		p->lpVtbl->GetFieldDescriptorCount(p, &n);
		for (i = 0; i < n; i++) {
			CREDENTIAL_PROVIDER_FIELD_DESCRIPTOR *d = NULL;
			if (SUCCEEDED(p->lpVtbl->GetFieldDescriptorAt(p, i, &d)) && d) {
				CoTaskMemFree(d->pszLabel);
				CoTaskMemFree(d);
			}
		}
		p->lpVtbl->GetCredentialCount(p, &count, &def, &al);
		p->lpVtbl->GetCredentialAt(p, 0, &c);
		printf("DLLLOAD us=%lld\n", (long long)(now_us() - t0));
		c->lpVtbl->Release(c);
		p->lpVtbl->Release(p);
	} else if (strcmp(argv[1], "pipebench") == 0 && argc >= 6) {
		/* pipebench N USER CODE PIPE [PIPE…]: each named pipe, and an
		 * echo pipe this process serves itself (echo_server), in turn. */
		uint8_t req[CP_MAX_REQUEST];
		WCHAR name[64];
		struct series s[8];
		int k = 0, i;
		size_t len = cp_request(req, sizeof req, CP_OP_VERIFY, CP_TOTP, argv[3], "windows-logon", "", argv[4]);
		if (len == 0 || argc - 5 > 7)
			return 2;
		memset(s, 0, sizeof s);
		static char labels[8][16];
		for (i = 5; i < argc; i++, k++) {
			if (k == 0)
				snprintf(labels[k], sizeof labels[k], "PIPEBENCH");
			else
				snprintf(labels[k], sizeof labels[k], "PIPEBENCH%d", k + 1);
			s[k].label = labels[k];
			s[k].pipe = wargv[i];
		}
		swprintf(name, 64, L"\\\\.\\pipe\\mamori-echo-%lu", (unsigned long)GetCurrentProcessId());
		g_echo_ready = CreateEventW(NULL, TRUE, FALSE, NULL);
		if (CreateThread(NULL, 0, echo_server, name, 0, NULL) == NULL ||
		    WaitForSingleObject(g_echo_ready, 5000) != WAIT_OBJECT_0)
			return 2;
		s[k].label = "ECHOBENCH", s[k].pipe = name, k++;
		if (pipebench(s, k, atoi(argv[2]), req, len) != 0)
			return 2;
	} else {
		fprintf(stderr, "bad command\n");
		return 2;
	}
	CoUninitialize();
	return 0;
}
