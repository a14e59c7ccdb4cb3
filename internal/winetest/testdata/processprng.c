/*
 * TEST SCAFFOLDING, NOT PRODUCT. Built by internal/winetest at test time
 * and copied into a throwaway wine prefix; never shipped.
 *
 * Go >= 1.22 Windows binaries get their random numbers from ProcessPrng in
 * bcryptprimitives.dll. Wine 8.0 (Debian 12) has no such DLL, so every Go
 * Windows binary aborts at start under it. This stub implements
 * ProcessPrng with RtlGenRandom (advapi32's SystemFunction036), which wine
 * has. Real Windows (10 and later) ships the real DLL.
 */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len)
{
	while (len > 0) {
		ULONG n = len > 0x10000000 ? 0x10000000 : (ULONG)len;
		if (!SystemFunction036(data, n))
			return FALSE;
		data += n;
		len -= n;
	}
	return TRUE;
}
