/*
 * mamori-cp.dll — the second factor at Windows logon and unlock, for
 * mamori. A small C DLL (no Go runtime inside LogonUI) with two COM
 * classes:
 *
 *   the provider (MAMORI_CLSID_Provider): one tile with user name,
 *   password and a one-time code (TOTP, recovery or temporary code, or the
 *   TPM-bound PIN) for CPUS_LOGON and CPUS_UNLOCK_WORKSTATION. The code is
 *   checked by mamori-agent over its named pipe (agent/localapi, the same
 *   wire format as pam_mamori.so's socket), within one overall deadline;
 *   only on "allow" does the tile hand Windows a Negotiate
 *   KERB_INTERACTIVE_UNLOCK_LOGON of user name + password, and Windows
 *   checks the password as usual. Agent unreachable → refused, except a
 *   one-time recovery code checked here against the break-glass file the
 *   agent keeps (SYSTEM/Administrators-only; argon2id with a salt per
 *   code, by our own argon2id.c, or SHA-256 for codes issued before),
 *   consumed under a lock, its use appended to FILE.used for the agent
 *   to report (agent/mfa, breakglass.go). Other scenarios (CREDUI, change password, PLAP) are
 *   declined: the tile does not appear there and nothing is weakened.
 *
 *   the filter (MAMORI_CLSID_Filter): in enforce mode, for logon and
 *   unlock, hides every other provider except an allow-list, so no tile
 *   takes a password alone. If mamori's own provider is not among those
 *   LogonUI offers (not registered, failed to load), it hides nothing:
 *   hiding every tile would lock everyone out with no way back.
 *
 * Settings (HKLM\SOFTWARE\mamori\CredentialProvider, written by the agent's
 * login-mfa control, agent/loginmfa): Mode ("enforce"), Pipe, BreakGlass,
 * TimeoutMs, Language ("ja"/"en"; default the UI language), ServiceSID
 * (the agent's account, default SYSTEM: the pipe's server and the
 * break-glass file's owner must be it, SYSTEM or Administrators),
 * AllowProviders (REG_MULTI_SZ of CLSIDs the filter also lets through).
 *
 * Build: make credprov (x86_64-w64-mingw32-gcc, static, no C++ runtime).
 */
#define WIN32_LEAN_AND_MEAN
#define UNICODE
#define _UNICODE
#include <windows.h>
#include <aclapi.h>
#include <ntsecapi.h>
#include <objbase.h>
#include <sddl.h>
#include <stddef.h>
#include <stdio.h>
#include <wchar.h>

#include "cpcore.h"
#include "cpdefs.h"

/* The packing in cpcore.c must be the structure ntsecapi.h declares. */
_Static_assert(sizeof(KERB_INTERACTIVE_UNLOCK_LOGON) == 64, "KERB_INTERACTIVE_UNLOCK_LOGON size");
_Static_assert(offsetof(KERB_INTERACTIVE_LOGON, LogonDomainName) == 8, "LogonDomainName");
_Static_assert(offsetof(KERB_INTERACTIVE_LOGON, UserName) == 24, "UserName");
_Static_assert(offsetof(KERB_INTERACTIVE_LOGON, Password) == 40, "Password");
_Static_assert(offsetof(KERB_INTERACTIVE_UNLOCK_LOGON, LogonId) == 56, "LogonId");
_Static_assert(offsetof(UNICODE_STRING, Buffer) == 8, "UNICODE_STRING.Buffer");
_Static_assert((int)KerbInteractiveLogon == (int)CP_KERB_INTERACTIVE_LOGON, "KerbInteractiveLogon");
_Static_assert((int)KerbWorkstationUnlockLogon == (int)CP_KERB_WORKSTATION_UNLOCK_LOGON, "KerbWorkstationUnlockLogon");

#define SETTINGS_KEY L"SOFTWARE\\mamori\\CredentialProvider"
#define DEFAULT_PIPE L"\\\\.\\pipe\\mamori-agent"
#define DEFAULT_BREAKGLASS L"C:\\ProgramData\\mamori\\mfa\\breakglass"
#define MAX_BG_FILE (1 << 20)

static LONG g_objects, g_locks;

/* ---- settings ---- */

struct cfg {
	WCHAR pipe[MAX_PATH], breakglass[MAX_PATH], service_sid[128];
	DWORD timeout_ms;
	int enforce, ja;
};

static void reg_str(HKEY k, const WCHAR *name, WCHAR *out, DWORD cap_chars, const WCHAR *def)
{
	DWORD type = 0, size = (cap_chars - 1) * sizeof(WCHAR);
	if (k == NULL || RegQueryValueExW(k, name, NULL, &type, (BYTE *)out, &size) != ERROR_SUCCESS || type != REG_SZ ||
	    size < sizeof(WCHAR)) {
		wcsncpy(out, def, cap_chars - 1);
		out[cap_chars - 1] = 0;
		return;
	}
	out[size / sizeof(WCHAR)] = 0;
}

static void load_cfg(struct cfg *c)
{
	HKEY k = NULL;
	WCHAR mode[32], lang[8];
	DWORD type = 0, v = 0, size = sizeof v;
	if (RegOpenKeyExW(HKEY_LOCAL_MACHINE, SETTINGS_KEY, 0, KEY_READ | KEY_WOW64_64KEY, &k) != ERROR_SUCCESS)
		k = NULL;
	reg_str(k, L"Pipe", c->pipe, MAX_PATH, DEFAULT_PIPE);
	reg_str(k, L"BreakGlass", c->breakglass, MAX_PATH, DEFAULT_BREAKGLASS);
	reg_str(k, L"ServiceSID", c->service_sid, 128, L"S-1-5-18");
	reg_str(k, L"Mode", mode, 32, L"");
	reg_str(k, L"Language", lang, 8, L"");
	c->timeout_ms = 5000;
	if (k != NULL && RegQueryValueExW(k, L"TimeoutMs", NULL, &type, (BYTE *)&v, &size) == ERROR_SUCCESS &&
	    type == REG_DWORD && v >= 100 && v <= 60000)
		c->timeout_ms = v;
	c->enforce = wcscmp(mode, L"enforce") == 0;
	if (wcscmp(lang, L"ja") == 0)
		c->ja = 1;
	else if (wcscmp(lang, L"en") == 0)
		c->ja = 0;
	else
		c->ja = PRIMARYLANGID(GetUserDefaultUILanguage()) == LANG_JAPANESE;
	if (k != NULL)
		RegCloseKey(k);
}

/* ---- messages (the terminal's UI language) ---- */

enum msg { M_TITLE, M_USER, M_PASSWORD, M_CODE, M_SUBMIT, M_MISSING, M_BAD_INPUT, M_DENIED, M_LOCKED, M_UNREACHABLE,
	   M_LSA, M_COUNT };

static const WCHAR *const MSG_EN[M_COUNT] = {
	L"mamori multi-factor sign-in",
	L"User name",
	L"Password",
	L"Verification code (authenticator app or PIN) or recovery code",
	L"Sign in",
	L"Enter your user name, password and verification code.",
	L"The verification code is not in a valid form.",
	L"The verification code is not correct, or was already used.",
	L"Locked after too many failures: wait, or call the helpdesk.",
	L"The mamori agent cannot be reached: use a recovery code, or call the helpdesk.",
	L"Windows sign-in (LSA) is not available: call the helpdesk.",
};

static const WCHAR *const MSG_JA[M_COUNT] = {
	L"mamori 多要素サインイン",
	L"ユーザー名",
	L"パスワード",
	L"確認コード（認証アプリまたは PIN）または回復コード",
	L"サインイン",
	L"ユーザー名、パスワード、確認コードを入力してください。",
	L"確認コードの形式が正しくありません。",
	L"確認コードが正しくないか、すでに使われています。",
	L"失敗が続いたため一時的にロックされています。しばらく待つか、ヘルプデスクに連絡してください。",
	L"mamori エージェントに接続できません。回復コードを使うか、ヘルプデスクに連絡してください。",
	L"Windows のサインイン (LSA) を利用できません。ヘルプデスクに連絡してください。",
};

static const WCHAR *msg(const struct cfg *c, enum msg m) { return c->ja ? MSG_JA[m] : MSG_EN[m]; }

static HRESULT dup_str(const WCHAR *s, LPWSTR *out)
{
	size_t n = wcslen(s) + 1;
	*out = CoTaskMemAlloc(n * sizeof(WCHAR));
	if (*out == NULL)
		return E_OUTOFMEMORY;
	memcpy(*out, s, n * sizeof(WCHAR));
	return S_OK;
}

/* ---- identities ---- */

static int sid_ok(PSID sid, const struct cfg *c)
{
	PSID want = NULL;
	int ok;
	if (sid == NULL || !IsValidSid(sid))
		return 0;
	if (IsWellKnownSid(sid, WinLocalSystemSid) || IsWellKnownSid(sid, WinBuiltinAdministratorsSid))
		return 1;
	if (!ConvertStringSidToSidW(c->service_sid, &want))
		return 0;
	ok = EqualSid(sid, want);
	LocalFree(want);
	return ok;
}

/* process_sid_ok: the process pid runs as SYSTEM or the agent's account. */
static int process_sid_ok(DWORD pid, const struct cfg *c)
{
	HANDLE p = OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, FALSE, pid), tok = NULL;
	BYTE buf[256];
	DWORD n = 0;
	int ok = 0;
	if (p == NULL)
		return 0;
	if (OpenProcessToken(p, TOKEN_QUERY, &tok) && GetTokenInformation(tok, TokenUser, buf, sizeof buf, &n)) {
		PSID sid = ((TOKEN_USER *)buf)->User.Sid;
		ok = IsWellKnownSid(sid, WinLocalSystemSid) || sid_ok(sid, c);
	}
	if (tok)
		CloseHandle(tok);
	CloseHandle(p);
	return ok;
}

/* ---- the agent's pipe ---- */

static DWORD remaining(DWORD start, DWORD total)
{
	DWORD spent = GetTickCount() - start;
	return spent >= total ? 0 : total - spent;
}

static int io_wait(HANDLE h, OVERLAPPED *ov, BOOL started, DWORD start, DWORD total, DWORD *done)
{
	/* Completed at once (the answer was already in the pipe, the request
	 * fitted in its buffer): no wait. Every call is a round trip to the
	 * kernel, or to wineserver under wine. */
	if (started)
		return GetOverlappedResult(h, ov, done, FALSE) ? 0 : -1;
	if (GetLastError() != ERROR_IO_PENDING)
		return -1;
	if (WaitForSingleObject(ov->hEvent, remaining(start, total)) != WAIT_OBJECT_0) {
		CancelIo(h);
		GetOverlappedResult(h, ov, done, TRUE);
		return -1;
	}
	return GetOverlappedResult(h, ov, done, FALSE) ? 0 : -1;
}

/* ask_agent sends one request and returns the answer (verdict or method),
 * or CP_UNREACHABLE: no pipe, a pipe not served by the agent's account, a
 * malformed answer, or the deadline passed. */
static int ask_agent(const struct cfg *c, DWORD start, int op, int method, const char *user, const char *service,
		     const char *code)
{
	uint8_t req[CP_MAX_REQUEST], ans[6];
	size_t n = cp_request(req, sizeof req, op, method, user, service, "", code);
	HANDLE h = INVALID_HANDLE_VALUE;
	OVERLAPPED ov;
	DWORD done = 0, got = 0, server = 0;
	int v = CP_UNREACHABLE;
	if (n == 0)
		return op == CP_OP_VERIFY ? CP_DENY : CP_UNREACHABLE;
	for (;;) {
		h = CreateFileW(c->pipe, GENERIC_READ | GENERIC_WRITE, 0, NULL, OPEN_EXISTING,
				FILE_FLAG_OVERLAPPED | SECURITY_SQOS_PRESENT | SECURITY_IDENTIFICATION, NULL);
		if (h != INVALID_HANDLE_VALUE)
			break;
		if (GetLastError() != ERROR_PIPE_BUSY || remaining(start, c->timeout_ms) == 0)
			goto out;
		/* Every instance busy (the agent is between two accepts): try
		 * again shortly, within the overall deadline. Not WaitNamedPipeW:
		 * wine 8's ignored its 5 s timeout and hung the stand-in for
		 * minutes; a bounded poll behaves the same on Windows. */
		Sleep(remaining(start, c->timeout_ms) < 10 ? remaining(start, c->timeout_ms) : 10);
	}
	/* A pipe of that name made by anyone but the agent's account (a
	 * squatter that would answer "allow") is not the agent. */
	if (!GetNamedPipeServerProcessId(h, &server) || !process_sid_ok(server, c))
		goto out;
	memset(&ov, 0, sizeof ov);
	ov.hEvent = CreateEventW(NULL, TRUE, FALSE, NULL);
	if (ov.hEvent == NULL)
		goto out;
	if (io_wait(h, &ov, WriteFile(h, req, (DWORD)n, NULL, &ov), start, c->timeout_ms, &done) == 0 && done == n) {
		while (got < sizeof ans) {
			ResetEvent(ov.hEvent);
			if (io_wait(h, &ov, ReadFile(h, ans + got, (DWORD)(sizeof ans - got), NULL, &ov), start,
				    c->timeout_ms, &done) != 0 ||
			    done == 0)
				break;
			got += done;
		}
		if (got == sizeof ans)
			v = cp_answer(ans, sizeof ans, op);
	}
	CloseHandle(ov.hEvent);
out:
	SecureZeroMemory(req, sizeof req);
	if (h != INVALID_HANDLE_VALUE)
		CloseHandle(h);
	return v;
}

/* ---- break-glass ---- */

/* The file must be owned by SYSTEM, Administrators or the agent's account,
 * and grant access to no one else. */
static int file_trusted(const WCHAR *path, const struct cfg *c)
{
	PSID owner = NULL;
	PACL dacl = NULL;
	PSECURITY_DESCRIPTOR sd = NULL;
	ACL_SIZE_INFORMATION info;
	DWORD i;
	int ok = 0;
	if (GetNamedSecurityInfoW(path, SE_FILE_OBJECT, OWNER_SECURITY_INFORMATION | DACL_SECURITY_INFORMATION, &owner,
				  NULL, &dacl, NULL, &sd) != ERROR_SUCCESS)
		return 0;
	if (!sid_ok(owner, c) || dacl == NULL || !GetAclInformation(dacl, &info, sizeof info, AclSizeInformation))
		goto out;
	for (i = 0; i < info.AceCount; i++) {
		ACE_HEADER *ace = NULL;
		if (!GetAce(dacl, i, (void **)&ace))
			goto out;
		if (ace->AceType == ACCESS_ALLOWED_ACE_TYPE && !sid_ok(&((ACCESS_ALLOWED_ACE *)ace)->SidStart, c))
			goto out;
		if (ace->AceType != ACCESS_ALLOWED_ACE_TYPE && ace->AceType != ACCESS_DENIED_ACE_TYPE)
			goto out;
	}
	ok = 1;
out:
	LocalFree(sd);
	return ok;
}

static HANDLE open_private(const WCHAR *path, DWORD access, DWORD disposition)
{
	SECURITY_ATTRIBUTES sa = {sizeof sa, NULL, FALSE};
	HANDLE h;
	if (!ConvertStringSecurityDescriptorToSecurityDescriptorW(L"D:P(A;;FA;;;SY)(A;;FA;;;BA)", SDDL_REVISION_1,
								   &sa.lpSecurityDescriptor, NULL))
		return INVALID_HANDLE_VALUE;
	h = CreateFileW(path, access, FILE_SHARE_READ | FILE_SHARE_WRITE, &sa, disposition,
			FILE_ATTRIBUTE_NORMAL | FILE_FLAG_OPEN_REPARSE_POINT, NULL);
	LocalFree(sa.lpSecurityDescriptor);
	return h;
}

static int write_all(HANDLE h, const void *p, size_t n)
{
	DWORD w = 0;
	return WriteFile(h, p, (DWORD)n, &w, NULL) && w == n ? 0 : -1;
}

/* breakglass consumes user's recovery code; 1 if it was one. */
static int breakglass(const struct cfg *c, const char *user, const char *code, const char *service)
{
	char norm[11], hash[CP_BG_MAX_HASH + 1], *data = NULL, *keep = NULL, line[512];
	WCHAR path[MAX_PATH + 16];
	HANDLE lock = INVALID_HANDLE_VALUE, f = INVALID_HANDLE_VALUE, u = INVALID_HANDLE_VALUE, t = INVALID_HANDLE_VALUE;
	OVERLAPPED ov;
	LARGE_INTEGER size;
	DWORD got = 0;
	size_t keep_len = 0, ul;
	int ok = 0;
	FILETIME ft;
	ULARGE_INTEGER now;

	if (cp_normalise_code(code, norm) != 0 || wcslen(c->breakglass) + 8 > MAX_PATH)
		return 0;
	swprintf(path, MAX_PATH + 16, L"%ls.lock", c->breakglass);
	lock = open_private(path, GENERIC_READ | GENERIC_WRITE, OPEN_ALWAYS);
	memset(&ov, 0, sizeof ov);
	if (lock == INVALID_HANDLE_VALUE || !LockFileEx(lock, LOCKFILE_EXCLUSIVE_LOCK, 0, 1, 0, &ov))
		goto out;
	if (!file_trusted(c->breakglass, c))
		goto out;
	f = CreateFileW(c->breakglass, GENERIC_READ, FILE_SHARE_READ, NULL, OPEN_EXISTING, FILE_FLAG_OPEN_REPARSE_POINT,
			NULL);
	if (f == INVALID_HANDLE_VALUE || !GetFileSizeEx(f, &size) || size.QuadPart > MAX_BG_FILE)
		goto out;
	data = HeapAlloc(GetProcessHeap(), HEAP_ZERO_MEMORY, (SIZE_T)size.QuadPart + 1);
	keep = HeapAlloc(GetProcessHeap(), HEAP_ZERO_MEMORY, (SIZE_T)size.QuadPart + 1);
	if (data == NULL || keep == NULL || !ReadFile(f, data, (DWORD)size.QuadPart, &got, NULL) || got != size.QuadPart)
		goto out;
	CloseHandle(f);
	f = INVALID_HANDLE_VALUE;
	if (cp_bg_take(data, got, user, norm, keep, (size_t)size.QuadPart + 1, &keep_len, hash) != 1)
		goto out;
	GetSystemTimeAsFileTime(&ft);
	now.LowPart = ft.dwLowDateTime, now.HighPart = ft.dwHighDateTime;
	ul = cp_used_line(line, sizeof line, hash, user, service, "-",
			  (long long)(now.QuadPart / 10000000ULL - 11644473600ULL));
	/* The used list first: a crash between the two leaves the code used. */
	swprintf(path, MAX_PATH + 16, L"%ls.used", c->breakglass);
	u = open_private(path, FILE_APPEND_DATA, OPEN_ALWAYS);
	if (ul == 0 || u == INVALID_HANDLE_VALUE || write_all(u, line, ul) != 0 || !FlushFileBuffers(u))
		goto out;
	swprintf(path, MAX_PATH + 16, L"%ls.tmp", c->breakglass);
	t = open_private(path, GENERIC_WRITE, CREATE_ALWAYS);
	if (t == INVALID_HANDLE_VALUE || write_all(t, keep, keep_len) != 0 || !FlushFileBuffers(t))
		goto out;
	CloseHandle(t);
	t = INVALID_HANDLE_VALUE;
	ok = 1; /* used from here on, whether or not the rewrite works */
	MoveFileExW(path, c->breakglass, MOVEFILE_REPLACE_EXISTING | MOVEFILE_WRITE_THROUGH);
out:
	if (data) {
		SecureZeroMemory(data, (SIZE_T)size.QuadPart);
		HeapFree(GetProcessHeap(), 0, data);
	}
	if (keep) {
		SecureZeroMemory(keep, (SIZE_T)size.QuadPart);
		HeapFree(GetProcessHeap(), 0, keep);
	}
	SecureZeroMemory(norm, sizeof norm);
	if (t != INVALID_HANDLE_VALUE)
		CloseHandle(t);
	if (u != INVALID_HANDLE_VALUE)
		CloseHandle(u);
	if (f != INVALID_HANDLE_VALUE)
		CloseHandle(f);
	if (lock != INVALID_HANDLE_VALUE)
		CloseHandle(lock); /* releases the lock */
	return ok;
}

/* ---- the credential (one tile) ---- */

enum { F_TITLE, F_USER, F_PASSWORD, F_CODE, F_SUBMIT, F_COUNT };

static const CREDENTIAL_PROVIDER_FIELD_TYPE FIELD_TYPES[F_COUNT] = {
	CPFT_LARGE_TEXT, CPFT_EDIT_TEXT, CPFT_PASSWORD_TEXT, CPFT_PASSWORD_TEXT, CPFT_SUBMIT_BUTTON};
static const enum msg FIELD_LABELS[F_COUNT] = {M_TITLE, M_USER, M_PASSWORD, M_CODE, M_SUBMIT};
static const size_t FIELD_MAX[F_COUNT] = {0, CP_MAX_USER, CP_MAX_PASSWORD, CP_MAX_CODE, 0};

typedef struct Credential {
	ICredentialProviderCredential iface;
	LONG refs;
	struct cfg cfg;
	CREDENTIAL_PROVIDER_USAGE_SCENARIO scenario;
	ICredentialProviderCredentialEvents *events;
	WCHAR value[F_COUNT][CP_MAX_USER + 1];
	int overflow[F_COUNT];
} Credential;

static Credential *cred_of(ICredentialProviderCredential *p) { return (Credential *)p; }

static void cred_clear(Credential *c, int field)
{
	SecureZeroMemory(c->value[field], sizeof c->value[field]);
	c->overflow[field] = 0;
	if (c->events)
		c->events->lpVtbl->SetFieldString(c->events, &c->iface, (DWORD)field, L"");
}

static HRESULT STDMETHODCALLTYPE Cred_QueryInterface(ICredentialProviderCredential *This, REFIID riid, void **ppv)
{
	if (ppv == NULL)
		return E_POINTER;
	if (IsEqualIID(riid, &IID_IUnknown) || IsEqualIID(riid, &MAMORI_IID_ICredentialProviderCredential)) {
		*ppv = This;
		This->lpVtbl->AddRef(This);
		return S_OK;
	}
	*ppv = NULL;
	return E_NOINTERFACE;
}

static ULONG STDMETHODCALLTYPE Cred_AddRef(ICredentialProviderCredential *This)
{
	return (ULONG)InterlockedIncrement(&cred_of(This)->refs);
}

static ULONG STDMETHODCALLTYPE Cred_Release(ICredentialProviderCredential *This)
{
	Credential *c = cred_of(This);
	LONG n = InterlockedDecrement(&c->refs);
	if (n == 0) {
		if (c->events)
			c->events->lpVtbl->Release(c->events);
		SecureZeroMemory(c->value, sizeof c->value);
		HeapFree(GetProcessHeap(), 0, c);
		InterlockedDecrement(&g_objects);
	}
	return (ULONG)n;
}

static HRESULT STDMETHODCALLTYPE Cred_Advise(ICredentialProviderCredential *This, ICredentialProviderCredentialEvents *e)
{
	Credential *c = cred_of(This);
	if (c->events)
		c->events->lpVtbl->Release(c->events);
	c->events = e;
	if (e)
		e->lpVtbl->AddRef(e);
	return S_OK;
}

static HRESULT STDMETHODCALLTYPE Cred_UnAdvise(ICredentialProviderCredential *This)
{
	Credential *c = cred_of(This);
	if (c->events)
		c->events->lpVtbl->Release(c->events);
	c->events = NULL;
	return S_OK;
}

static HRESULT STDMETHODCALLTYPE Cred_SetSelected(ICredentialProviderCredential *This, BOOL *auto_logon)
{
	(void)This;
	if (auto_logon == NULL)
		return E_POINTER;
	*auto_logon = FALSE;
	return S_OK;
}

static HRESULT STDMETHODCALLTYPE Cred_SetDeselected(ICredentialProviderCredential *This)
{
	Credential *c = cred_of(This);
	cred_clear(c, F_PASSWORD);
	cred_clear(c, F_CODE);
	return S_OK;
}

static HRESULT STDMETHODCALLTYPE Cred_GetFieldState(ICredentialProviderCredential *This, DWORD id,
						    CREDENTIAL_PROVIDER_FIELD_STATE *st,
						    CREDENTIAL_PROVIDER_FIELD_INTERACTIVE_STATE *ist)
{
	(void)This;
	if (id >= F_COUNT || st == NULL || ist == NULL)
		return E_INVALIDARG;
	*st = id == F_TITLE ? CPFS_DISPLAY_IN_BOTH : CPFS_DISPLAY_IN_SELECTED_TILE;
	*ist = id == F_USER ? CPFIS_FOCUSED : CPFIS_NONE;
	return S_OK;
}

static HRESULT STDMETHODCALLTYPE Cred_GetStringValue(ICredentialProviderCredential *This, DWORD id, LPWSTR *out)
{
	Credential *c = cred_of(This);
	if (id >= F_COUNT || out == NULL)
		return E_INVALIDARG;
	if (FIELD_TYPES[id] == CPFT_LARGE_TEXT || FIELD_TYPES[id] == CPFT_SUBMIT_BUTTON)
		return dup_str(msg(&c->cfg, FIELD_LABELS[id]), out);
	return dup_str(c->value[id], out);
}

static HRESULT STDMETHODCALLTYPE Cred_GetBitmapValue(ICredentialProviderCredential *This, DWORD id, HBITMAP *bmp)
{
	(void)This, (void)id;
	if (bmp)
		*bmp = NULL;
	return E_NOTIMPL;
}

static HRESULT STDMETHODCALLTYPE Cred_GetCheckboxValue(ICredentialProviderCredential *This, DWORD id, BOOL *checked,
						       LPWSTR *label)
{
	(void)This, (void)id, (void)checked, (void)label;
	return E_NOTIMPL;
}

static HRESULT STDMETHODCALLTYPE Cred_GetSubmitButtonValue(ICredentialProviderCredential *This, DWORD id, DWORD *adj)
{
	(void)This;
	if (id != F_SUBMIT || adj == NULL)
		return E_INVALIDARG;
	*adj = F_CODE;
	return S_OK;
}

static HRESULT STDMETHODCALLTYPE Cred_GetComboBoxValueCount(ICredentialProviderCredential *This, DWORD id, DWORD *n,
							    DWORD *sel)
{
	(void)This, (void)id, (void)n, (void)sel;
	return E_NOTIMPL;
}

static HRESULT STDMETHODCALLTYPE Cred_GetComboBoxValueAt(ICredentialProviderCredential *This, DWORD id, DWORD item,
							 LPWSTR *out)
{
	(void)This, (void)id, (void)item, (void)out;
	return E_NOTIMPL;
}

/* SetStringValue keeps at most the field's limit; a longer input is
 * remembered as too long and refused at submission, never truncated into
 * something the user did not type. */
static HRESULT STDMETHODCALLTYPE Cred_SetStringValue(ICredentialProviderCredential *This, DWORD id, LPCWSTR s)
{
	Credential *c = cred_of(This);
	size_t n;
	if (id >= F_COUNT || FIELD_MAX[id] == 0)
		return E_INVALIDARG;
	n = cp_wlen((const uint16_t *)s, FIELD_MAX[id] + 1);
	SecureZeroMemory(c->value[id], sizeof c->value[id]);
	c->overflow[id] = n > FIELD_MAX[id];
	if (!c->overflow[id] && n > 0)
		memcpy(c->value[id], s, n * sizeof(WCHAR));
	return S_OK;
}

static HRESULT STDMETHODCALLTYPE Cred_SetCheckboxValue(ICredentialProviderCredential *This, DWORD id, BOOL b)
{
	(void)This, (void)id, (void)b;
	return E_NOTIMPL;
}

static HRESULT STDMETHODCALLTYPE Cred_SetComboBoxSelectedValue(ICredentialProviderCredential *This, DWORD id, DWORD sel)
{
	(void)This, (void)id, (void)sel;
	return E_NOTIMPL;
}

static HRESULT STDMETHODCALLTYPE Cred_CommandLinkClicked(ICredentialProviderCredential *This, DWORD id)
{
	(void)This, (void)id;
	return E_NOTIMPL;
}

/* auth_package: LSA's number for "Negotiate" (what LogonUI's own password
 * tile uses), else "Kerberos": an LSA without Negotiate has been seen only
 * under wine, where the tests run (docs/windows.md). secur32.dll is loaded
 * here, at the first submission, not with the DLL: LogonUI's start does
 * not wait for it. */
typedef NTSTATUS(NTAPI *lsa_connect_fn)(PHANDLE);
typedef NTSTATUS(NTAPI *lsa_lookup_fn)(HANDLE, PLSA_STRING, PULONG);
typedef NTSTATUS(NTAPI *lsa_close_fn)(HANDLE);

static int auth_package(ULONG *pkg)
{
	static char names[2][16] = {"Negotiate", "Kerberos"};
	HMODULE m = LoadLibraryExW(L"secur32.dll", NULL, LOAD_LIBRARY_SEARCH_SYSTEM32);
	lsa_connect_fn connect = m ? (lsa_connect_fn)(void *)GetProcAddress(m, "LsaConnectUntrusted") : NULL;
	lsa_lookup_fn lookup = m ? (lsa_lookup_fn)(void *)GetProcAddress(m, "LsaLookupAuthenticationPackage") : NULL;
	lsa_close_fn closeh = m ? (lsa_close_fn)(void *)GetProcAddress(m, "LsaDeregisterLogonProcess") : NULL;
	HANDLE lsa = NULL;
	LSA_STRING name;
	NTSTATUS st = -1;
	int i;
	if (connect == NULL || lookup == NULL || closeh == NULL || connect(&lsa) != 0)
		return -1; /* secur32 stays loaded: it is a system DLL LogonUI uses anyway */
	for (i = 0; i < 2 && st != 0; i++) {
		name.Buffer = names[i];
		name.Length = (USHORT)strlen(names[i]);
		name.MaximumLength = (USHORT)sizeof names[i];
		st = lookup(lsa, &name, pkg);
	}
	closeh(lsa);
	return st == 0 ? 0 : -1;
}

static HRESULT refuse(Credential *c, enum msg m, CREDENTIAL_PROVIDER_GET_SERIALIZATION_RESPONSE *r, LPWSTR *text,
		      CREDENTIAL_PROVIDER_STATUS_ICON *icon)
{
	*r = CPGSR_NO_CREDENTIAL_NOT_FINISHED;
	if (icon)
		*icon = CPSI_ERROR;
	cred_clear(c, F_CODE);
	return text ? dup_str(msg(&c->cfg, m), text) : S_OK;
}

static HRESULT STDMETHODCALLTYPE Cred_GetSerialization(ICredentialProviderCredential *This,
						       CREDENTIAL_PROVIDER_GET_SERIALIZATION_RESPONSE *r,
						       CREDENTIAL_PROVIDER_CREDENTIAL_SERIALIZATION *cs, LPWSTR *text,
						       CREDENTIAL_PROVIDER_STATUS_ICON *icon)
{
	Credential *c = cred_of(This);
	WCHAR domain[CP_MAX_USER + 1], name[CP_MAX_USER + 1], computer[MAX_COMPUTERNAME_LENGTH + 1];
	char user8[CP_MAX_FIELD * 3 + 1], code8[CP_MAX_CODE_BYTES + 1];
	const char *service = c->scenario == CPUS_UNLOCK_WORKSTATION ? "windows-unlock" : "windows-logon";
	const WCHAR *dom;
	size_t dlen, ulen, plen, size;
	DWORD start = GetTickCount(), clen = MAX_COMPUTERNAME_LENGTH + 1;
	ULONG pkg = 0;
	int method, v;
	uint8_t *buf;
	HRESULT hr;

	if (r == NULL || cs == NULL)
		return E_POINTER;
	if (text)
		*text = NULL;
	if (icon)
		*icon = CPSI_NONE;
	memset(cs, 0, sizeof *cs);
	load_cfg(&c->cfg);
	if (c->overflow[F_USER] || c->overflow[F_PASSWORD] || c->overflow[F_CODE])
		return refuse(c, M_BAD_INPUT, r, text, icon);
	if (c->value[F_USER][0] == 0 || c->value[F_CODE][0] == 0)
		return refuse(c, M_MISSING, r, text, icon);
	if (cp_split_user((const uint16_t *)c->value[F_USER], (uint16_t *)domain, CP_MAX_USER + 1, (uint16_t *)name,
			  CP_MAX_USER + 1) != 0 ||
	    cp_utf16_to_utf8((const uint16_t *)name, CP_MAX_USER + 1, user8, sizeof user8) <= 0 ||
	    strlen(user8) > CP_MAX_FIELD ||
	    cp_utf16_to_utf8((const uint16_t *)c->value[F_CODE], CP_MAX_CODE + 1, code8, sizeof code8) <= 0 ||
	    cp_check_code(code8) != 0) {
		SecureZeroMemory(code8, sizeof code8);
		return refuse(c, M_BAD_INPUT, r, text, icon);
	}
	/* Before the code is spent: can Windows take the credential at all? */
	if (auth_package(&pkg) != 0) {
		SecureZeroMemory(code8, sizeof code8);
		return refuse(c, M_LSA, r, text, icon);
	}
	method = ask_agent(&c->cfg, start, CP_OP_METHOD, CP_TOTP, user8, service, "");
	v = ask_agent(&c->cfg, start, CP_OP_VERIFY, method == CP_PIN ? CP_PIN : CP_TOTP, user8, service, code8);
	if (v == CP_UNREACHABLE)
		v = breakglass(&c->cfg, user8, code8, service) ? CP_ALLOW : CP_UNREACHABLE;
	SecureZeroMemory(code8, sizeof code8);
	switch (v) {
	case CP_ALLOW:
		break;
	case CP_LOCKED:
		return refuse(c, M_LOCKED, r, text, icon);
	case CP_UNREACHABLE:
		return refuse(c, M_UNREACHABLE, r, text, icon);
	default:
		return refuse(c, M_DENIED, r, text, icon);
	}

	/* Allowed: the password goes to Windows, which checks it. */
	dom = domain;
	if (domain[0] == 0) {
		if (!GetComputerNameW(computer, &clen))
			computer[0] = 0;
		dom = computer;
	}
	dlen = wcslen(dom), ulen = wcslen(name), plen = wcslen(c->value[F_PASSWORD]);
	size = cp_kerb_size(dlen, ulen, plen);
	buf = size ? CoTaskMemAlloc(size) : NULL;
	if (buf == NULL)
		return refuse(c, M_LSA, r, text, icon);
	if (cp_pack_kerb(buf, size,
			 c->scenario == CPUS_UNLOCK_WORKSTATION ? CP_KERB_WORKSTATION_UNLOCK_LOGON
								 : CP_KERB_INTERACTIVE_LOGON,
			 (const uint16_t *)dom, dlen, (const uint16_t *)name, ulen,
			 (const uint16_t *)c->value[F_PASSWORD], plen) != size) {
		SecureZeroMemory(buf, size);
		CoTaskMemFree(buf);
		return refuse(c, M_LSA, r, text, icon);
	}
	cs->ulAuthenticationPackage = pkg;
	cs->clsidCredentialProvider = MAMORI_CLSID_Provider;
	cs->cbSerialization = (ULONG)size;
	cs->rgbSerialization = buf;
	*r = CPGSR_RETURN_CREDENTIAL_FINISHED;
	hr = S_OK;
	cred_clear(c, F_CODE);
	return hr;
}

static HRESULT STDMETHODCALLTYPE Cred_ReportResult(ICredentialProviderCredential *This, CP_NTSTATUS st, CP_NTSTATUS sub,
						   LPWSTR *text, CREDENTIAL_PROVIDER_STATUS_ICON *icon)
{
	Credential *c = cred_of(This);
	(void)sub;
	if (text)
		*text = NULL;
	if (icon)
		*icon = CPSI_NONE;
	if (st != 0) /* the password was refused: type it again, with a new code */
		cred_clear(c, F_PASSWORD);
	cred_clear(c, F_CODE);
	return S_OK;
}

static const ICredentialProviderCredentialVtbl CRED_VTBL = {
	Cred_QueryInterface,	     Cred_AddRef,		Cred_Release,		  Cred_Advise,
	Cred_UnAdvise,		     Cred_SetSelected,		Cred_SetDeselected,	  Cred_GetFieldState,
	Cred_GetStringValue,	     Cred_GetBitmapValue,	Cred_GetCheckboxValue,	  Cred_GetSubmitButtonValue,
	Cred_GetComboBoxValueCount, Cred_GetComboBoxValueAt, Cred_SetStringValue,	  Cred_SetCheckboxValue,
	Cred_SetComboBoxSelectedValue, Cred_CommandLinkClicked, Cred_GetSerialization, Cred_ReportResult,
};

/* ---- the provider ---- */

typedef struct Provider {
	ICredentialProvider iface;
	LONG refs;
	CREDENTIAL_PROVIDER_USAGE_SCENARIO scenario;
	Credential *cred;
	struct cfg cfg;
} Provider;

static Provider *prov_of(ICredentialProvider *p) { return (Provider *)p; }

static HRESULT STDMETHODCALLTYPE Prov_QueryInterface(ICredentialProvider *This, REFIID riid, void **ppv)
{
	if (ppv == NULL)
		return E_POINTER;
	if (IsEqualIID(riid, &IID_IUnknown) || IsEqualIID(riid, &MAMORI_IID_ICredentialProvider)) {
		*ppv = This;
		This->lpVtbl->AddRef(This);
		return S_OK;
	}
	*ppv = NULL;
	return E_NOINTERFACE;
}

static ULONG STDMETHODCALLTYPE Prov_AddRef(ICredentialProvider *This)
{
	return (ULONG)InterlockedIncrement(&prov_of(This)->refs);
}

static ULONG STDMETHODCALLTYPE Prov_Release(ICredentialProvider *This)
{
	Provider *p = prov_of(This);
	LONG n = InterlockedDecrement(&p->refs);
	if (n == 0) {
		if (p->cred)
			p->cred->iface.lpVtbl->Release(&p->cred->iface);
		HeapFree(GetProcessHeap(), 0, p);
		InterlockedDecrement(&g_objects);
	}
	return (ULONG)n;
}

static HRESULT STDMETHODCALLTYPE Prov_SetUsageScenario(ICredentialProvider *This,
						       CREDENTIAL_PROVIDER_USAGE_SCENARIO cpus, DWORD flags)
{
	Provider *p = prov_of(This);
	Credential *c;
	(void)flags;
	/* Logon and unlock only. CREDUI (RDP with NLA, UAC), change password
	 * and PLAP are declined: the tile does not appear there, and the
	 * filter leaves those scenarios alone (docs/windows.md). */
	if (cpus != CPUS_LOGON && cpus != CPUS_UNLOCK_WORKSTATION)
		return E_NOTIMPL;
	p->scenario = cpus;
	load_cfg(&p->cfg);
	if (p->cred == NULL) {
		c = HeapAlloc(GetProcessHeap(), HEAP_ZERO_MEMORY, sizeof *c);
		if (c == NULL)
			return E_OUTOFMEMORY;
		c->iface.lpVtbl = &CRED_VTBL;
		c->refs = 1;
		InterlockedIncrement(&g_objects);
		p->cred = c;
	}
	p->cred->scenario = cpus;
	p->cred->cfg = p->cfg;
	return S_OK;
}

static HRESULT STDMETHODCALLTYPE Prov_SetSerialization(ICredentialProvider *This,
						       const CREDENTIAL_PROVIDER_CREDENTIAL_SERIALIZATION *cs)
{
	(void)This, (void)cs;
	return E_NOTIMPL; /* no pre-filled credentials: the code is always asked */
}

static HRESULT STDMETHODCALLTYPE Prov_Advise(ICredentialProvider *This, ICredentialProviderEvents *e, UINT_PTR ctx)
{
	(void)This, (void)e, (void)ctx;
	return S_OK; /* the tile never changes by itself */
}

static HRESULT STDMETHODCALLTYPE Prov_UnAdvise(ICredentialProvider *This)
{
	(void)This;
	return S_OK;
}

static HRESULT STDMETHODCALLTYPE Prov_GetFieldDescriptorCount(ICredentialProvider *This, DWORD *n)
{
	(void)This;
	if (n == NULL)
		return E_POINTER;
	*n = F_COUNT;
	return S_OK;
}

static HRESULT STDMETHODCALLTYPE Prov_GetFieldDescriptorAt(ICredentialProvider *This, DWORD i,
							   CREDENTIAL_PROVIDER_FIELD_DESCRIPTOR **out)
{
	Provider *p = prov_of(This);
	CREDENTIAL_PROVIDER_FIELD_DESCRIPTOR *d;
	if (out == NULL)
		return E_POINTER;
	*out = NULL;
	if (i >= F_COUNT)
		return E_INVALIDARG;
	d = CoTaskMemAlloc(sizeof *d);
	if (d == NULL)
		return E_OUTOFMEMORY;
	memset(d, 0, sizeof *d);
	d->dwFieldID = i;
	d->cpft = FIELD_TYPES[i];
	if (FAILED(dup_str(msg(&p->cfg, FIELD_LABELS[i]), &d->pszLabel))) {
		CoTaskMemFree(d);
		return E_OUTOFMEMORY;
	}
	*out = d;
	return S_OK;
}

static HRESULT STDMETHODCALLTYPE Prov_GetCredentialCount(ICredentialProvider *This, DWORD *n, DWORD *def, BOOL *autologon)
{
	Provider *p = prov_of(This);
	if (n == NULL || def == NULL || autologon == NULL)
		return E_POINTER;
	*n = p->cred ? 1 : 0;
	*def = CREDENTIAL_PROVIDER_NO_DEFAULT;
	*autologon = FALSE;
	return S_OK;
}

static HRESULT STDMETHODCALLTYPE Prov_GetCredentialAt(ICredentialProvider *This, DWORD i,
						      ICredentialProviderCredential **out)
{
	Provider *p = prov_of(This);
	if (out == NULL)
		return E_POINTER;
	*out = NULL;
	if (i != 0 || p->cred == NULL)
		return E_INVALIDARG;
	return p->cred->iface.lpVtbl->QueryInterface(&p->cred->iface, &MAMORI_IID_ICredentialProviderCredential,
						     (void **)out);
}

static const ICredentialProviderVtbl PROV_VTBL = {
	Prov_QueryInterface,	      Prov_AddRef,		 Prov_Release,		 Prov_SetUsageScenario,
	Prov_SetSerialization,	      Prov_Advise,		 Prov_UnAdvise,		 Prov_GetFieldDescriptorCount,
	Prov_GetFieldDescriptorAt,    Prov_GetCredentialCount, Prov_GetCredentialAt,
};

/* ---- the filter ---- */

typedef struct Filter {
	ICredentialProviderFilter iface;
	LONG refs;
} Filter;

static HRESULT STDMETHODCALLTYPE Filt_QueryInterface(ICredentialProviderFilter *This, REFIID riid, void **ppv)
{
	if (ppv == NULL)
		return E_POINTER;
	if (IsEqualIID(riid, &IID_IUnknown) || IsEqualIID(riid, &MAMORI_IID_ICredentialProviderFilter)) {
		*ppv = This;
		This->lpVtbl->AddRef(This);
		return S_OK;
	}
	*ppv = NULL;
	return E_NOINTERFACE;
}

static ULONG STDMETHODCALLTYPE Filt_AddRef(ICredentialProviderFilter *This)
{
	return (ULONG)InterlockedIncrement(&((Filter *)This)->refs);
}

static ULONG STDMETHODCALLTYPE Filt_Release(ICredentialProviderFilter *This)
{
	LONG n = InterlockedDecrement(&((Filter *)This)->refs);
	if (n == 0) {
		HeapFree(GetProcessHeap(), 0, This);
		InterlockedDecrement(&g_objects);
	}
	return (ULONG)n;
}

/* allowed_extra: clsid is in AllowProviders (REG_MULTI_SZ of "{…}"). */
static int allowed_extra(const GUID *clsid)
{
	HKEY k;
	WCHAR buf[2048], *s;
	DWORD type = 0, size = sizeof buf - 2 * sizeof(WCHAR);
	int ok = 0;
	memset(buf, 0, sizeof buf);
	if (RegOpenKeyExW(HKEY_LOCAL_MACHINE, SETTINGS_KEY, 0, KEY_READ | KEY_WOW64_64KEY, &k) != ERROR_SUCCESS)
		return 0;
	if (RegQueryValueExW(k, L"AllowProviders", NULL, &type, (BYTE *)buf, &size) == ERROR_SUCCESS &&
	    type == REG_MULTI_SZ) {
		for (s = buf; *s && !ok; s += wcslen(s) + 1) {
			GUID g;
			if (CLSIDFromString(s, &g) == NOERROR && IsEqualGUID(&g, clsid))
				ok = 1;
		}
	}
	RegCloseKey(k);
	return ok;
}

static HRESULT STDMETHODCALLTYPE Filt_Filter(ICredentialProviderFilter *This, CREDENTIAL_PROVIDER_USAGE_SCENARIO cpus,
					     DWORD flags, GUID *clsids, BOOL *allow, DWORD n)
{
	struct cfg c;
	DWORD i;
	int ours = 0;
	(void)This, (void)flags;
	if (n > 0 && (clsids == NULL || allow == NULL))
		return E_INVALIDARG;
	load_cfg(&c);
	if (!c.enforce || (cpus != CPUS_LOGON && cpus != CPUS_UNLOCK_WORKSTATION))
		return S_OK; /* monitor mode, or a scenario mamori does not cover: nothing hidden */
	for (i = 0; i < n; i++)
		if (IsEqualGUID(&clsids[i], &MAMORI_CLSID_Provider) && allow[i])
			ours = 1;
	if (!ours)
		return S_OK; /* hiding every tile would lock everyone out */
	for (i = 0; i < n; i++)
		if (!IsEqualGUID(&clsids[i], &MAMORI_CLSID_Provider) && !allowed_extra(&clsids[i]))
			allow[i] = FALSE;
	return S_OK;
}

static HRESULT STDMETHODCALLTYPE Filt_UpdateRemoteCredential(ICredentialProviderFilter *This,
							     const CREDENTIAL_PROVIDER_CREDENTIAL_SERIALIZATION *in,
							     CREDENTIAL_PROVIDER_CREDENTIAL_SERIALIZATION *out)
{
	(void)This, (void)in, (void)out;
	/* A remote (RDP) credential is not redirected to mamori's tile with the
	 * password pre-filled: the user types it again with a code. */
	return E_NOTIMPL;
}

static const ICredentialProviderFilterVtbl FILT_VTBL = {
	Filt_QueryInterface, Filt_AddRef, Filt_Release, Filt_Filter, Filt_UpdateRemoteCredential,
};

/* ---- class factory and DLL exports ---- */

typedef struct Factory {
	IClassFactory iface;
	const GUID *clsid;
} Factory;

static HRESULT STDMETHODCALLTYPE Fact_QueryInterface(IClassFactory *This, REFIID riid, void **ppv)
{
	if (ppv == NULL)
		return E_POINTER;
	if (IsEqualIID(riid, &IID_IUnknown) || IsEqualIID(riid, &IID_IClassFactory)) {
		*ppv = This;
		return S_OK;
	}
	*ppv = NULL;
	return E_NOINTERFACE;
}

static ULONG STDMETHODCALLTYPE Fact_AddRef(IClassFactory *This)
{
	(void)This;
	return 2; /* static objects */
}

static ULONG STDMETHODCALLTYPE Fact_Release(IClassFactory *This)
{
	(void)This;
	return 1;
}

static HRESULT STDMETHODCALLTYPE Fact_CreateInstance(IClassFactory *This, IUnknown *outer, REFIID riid, void **ppv)
{
	Factory *f = (Factory *)This;
	HRESULT hr;
	if (ppv == NULL)
		return E_POINTER;
	*ppv = NULL;
	if (outer != NULL)
		return CLASS_E_NOAGGREGATION;
	if (IsEqualGUID(f->clsid, &MAMORI_CLSID_Provider)) {
		Provider *p = HeapAlloc(GetProcessHeap(), HEAP_ZERO_MEMORY, sizeof *p);
		if (p == NULL)
			return E_OUTOFMEMORY;
		p->iface.lpVtbl = &PROV_VTBL;
		p->refs = 1;
		load_cfg(&p->cfg);
		InterlockedIncrement(&g_objects);
		hr = p->iface.lpVtbl->QueryInterface(&p->iface, riid, ppv);
		p->iface.lpVtbl->Release(&p->iface);
		return hr;
	} else {
		Filter *t = HeapAlloc(GetProcessHeap(), HEAP_ZERO_MEMORY, sizeof *t);
		if (t == NULL)
			return E_OUTOFMEMORY;
		t->iface.lpVtbl = &FILT_VTBL;
		t->refs = 1;
		InterlockedIncrement(&g_objects);
		hr = t->iface.lpVtbl->QueryInterface(&t->iface, riid, ppv);
		t->iface.lpVtbl->Release(&t->iface);
		return hr;
	}
}

static HRESULT STDMETHODCALLTYPE Fact_LockServer(IClassFactory *This, BOOL lock)
{
	(void)This;
	if (lock)
		InterlockedIncrement(&g_locks);
	else
		InterlockedDecrement(&g_locks);
	return S_OK;
}

static IClassFactoryVtbl FACT_VTBL = {
	Fact_QueryInterface, Fact_AddRef, Fact_Release, Fact_CreateInstance, Fact_LockServer,
};

static Factory g_provider_factory = {{&FACT_VTBL}, &MAMORI_CLSID_Provider};
static Factory g_filter_factory = {{&FACT_VTBL}, &MAMORI_CLSID_Filter};

__declspec(dllexport) HRESULT WINAPI DllGetClassObject(REFCLSID clsid, REFIID riid, void **ppv)
{
	Factory *f;
	if (ppv == NULL)
		return E_POINTER;
	*ppv = NULL;
	if (IsEqualCLSID(clsid, &MAMORI_CLSID_Provider))
		f = &g_provider_factory;
	else if (IsEqualCLSID(clsid, &MAMORI_CLSID_Filter))
		f = &g_filter_factory;
	else
		return CLASS_E_CLASSNOTAVAILABLE;
	return f->iface.lpVtbl->QueryInterface(&f->iface, riid, ppv);
}

__declspec(dllexport) HRESULT WINAPI DllCanUnloadNow(void)
{
	return g_objects == 0 && g_locks == 0 ? S_OK : S_FALSE;
}

BOOL WINAPI DllMain(HINSTANCE h, DWORD reason, LPVOID reserved)
{
	(void)reserved;
	if (reason == DLL_PROCESS_ATTACH)
		DisableThreadLibraryCalls(h);
	return TRUE;
}
