/*
 * cpdefs.h — the credential provider interfaces, written for mamori.
 *
 * Debian's mingw-w64 (10.0) and wine 8 have no credentialprovider.h, so
 * the interfaces, enums, structures and IIDs LogonUI uses are declared
 * here, as C vtables. The method order is the ABI: a vtable slot in the
 * wrong place compiles, passes a stand-in built from this same header,
 * and crashes LogonUI. layout_test.go pins every slot and every IID to a
 * table transcribed from the Windows SDK's credentialprovider.idl
 * (testdata/sdk_credentialprovider.txt): edit the table only from the SDK.
 */
#ifndef MAMORI_CPDEFS_H
#define MAMORI_CPDEFS_H

#include <windows.h>
#include <unknwn.h>

/* ---- enums (credentialprovider.idl, v1_enum: 32-bit) ---- */

typedef enum CREDENTIAL_PROVIDER_USAGE_SCENARIO {
	CPUS_INVALID = 0,
	CPUS_LOGON = 1,
	CPUS_UNLOCK_WORKSTATION = 2,
	CPUS_CHANGE_PASSWORD = 3,
	CPUS_CREDUI = 4,
	CPUS_PLAP = 5
} CREDENTIAL_PROVIDER_USAGE_SCENARIO;

typedef enum CREDENTIAL_PROVIDER_FIELD_TYPE {
	CPFT_INVALID = 0,
	CPFT_LARGE_TEXT = 1,
	CPFT_SMALL_TEXT = 2,
	CPFT_COMMAND_LINK = 3,
	CPFT_EDIT_TEXT = 4,
	CPFT_PASSWORD_TEXT = 5,
	CPFT_TILE_IMAGE = 6,
	CPFT_CHECKBOX = 7,
	CPFT_COMBOBOX = 8,
	CPFT_SUBMIT_BUTTON = 9
} CREDENTIAL_PROVIDER_FIELD_TYPE;

typedef enum CREDENTIAL_PROVIDER_FIELD_STATE {
	CPFS_HIDDEN = 0,
	CPFS_DISPLAY_IN_SELECTED_TILE = 1,
	CPFS_DISPLAY_IN_DESELECTED_TILE = 2,
	CPFS_DISPLAY_IN_BOTH = 3
} CREDENTIAL_PROVIDER_FIELD_STATE;

typedef enum CREDENTIAL_PROVIDER_FIELD_INTERACTIVE_STATE {
	CPFIS_NONE = 0,
	CPFIS_READONLY = 1,
	CPFIS_DISABLED = 2,
	CPFIS_FOCUSED = 3
} CREDENTIAL_PROVIDER_FIELD_INTERACTIVE_STATE;

typedef enum CREDENTIAL_PROVIDER_GET_SERIALIZATION_RESPONSE {
	CPGSR_NO_CREDENTIAL_NOT_FINISHED = 0,
	CPGSR_NO_CREDENTIAL_FINISHED = 1,
	CPGSR_RETURN_CREDENTIAL_FINISHED = 2,
	CPGSR_RETURN_NO_CREDENTIAL_FINISHED = 3
} CREDENTIAL_PROVIDER_GET_SERIALIZATION_RESPONSE;

typedef enum CREDENTIAL_PROVIDER_STATUS_ICON {
	CPSI_NONE = 0,
	CPSI_ERROR = 1,
	CPSI_WARNING = 2,
	CPSI_SUCCESS = 3
} CREDENTIAL_PROVIDER_STATUS_ICON;

#define CREDENTIAL_PROVIDER_NO_DEFAULT ((DWORD)-1)

/* ---- structures ---- */

typedef struct CREDENTIAL_PROVIDER_FIELD_DESCRIPTOR {
	DWORD dwFieldID;
	CREDENTIAL_PROVIDER_FIELD_TYPE cpft;
	LPWSTR pszLabel;
	GUID guidFieldType;
} CREDENTIAL_PROVIDER_FIELD_DESCRIPTOR;

typedef struct CREDENTIAL_PROVIDER_CREDENTIAL_SERIALIZATION {
	ULONG ulAuthenticationPackage;
	GUID clsidCredentialProvider;
	ULONG cbSerialization;
	BYTE *rgbSerialization;
} CREDENTIAL_PROVIDER_CREDENTIAL_SERIALIZATION;

typedef struct ICredentialProvider ICredentialProvider;
typedef struct ICredentialProviderCredential ICredentialProviderCredential;
typedef struct ICredentialProviderEvents ICredentialProviderEvents;
typedef struct ICredentialProviderFilter ICredentialProviderFilter;
typedef struct ICredentialProviderCredentialEvents ICredentialProviderCredentialEvents;

#ifndef CP_NTSTATUS_DEFINED
#define CP_NTSTATUS_DEFINED
typedef LONG CP_NTSTATUS;
#endif

/* ---- ICredentialProviderCredential ---- */

typedef struct ICredentialProviderCredentialVtbl {
	HRESULT(STDMETHODCALLTYPE *QueryInterface)(ICredentialProviderCredential *This, REFIID riid, void **ppv);
	ULONG(STDMETHODCALLTYPE *AddRef)(ICredentialProviderCredential *This);
	ULONG(STDMETHODCALLTYPE *Release)(ICredentialProviderCredential *This);
	HRESULT(STDMETHODCALLTYPE *Advise)(ICredentialProviderCredential *This, ICredentialProviderCredentialEvents *pcpce);
	HRESULT(STDMETHODCALLTYPE *UnAdvise)(ICredentialProviderCredential *This);
	HRESULT(STDMETHODCALLTYPE *SetSelected)(ICredentialProviderCredential *This, BOOL *pbAutoLogon);
	HRESULT(STDMETHODCALLTYPE *SetDeselected)(ICredentialProviderCredential *This);
	HRESULT(STDMETHODCALLTYPE *GetFieldState)(ICredentialProviderCredential *This, DWORD dwFieldID,
						   CREDENTIAL_PROVIDER_FIELD_STATE *pcpfs,
						   CREDENTIAL_PROVIDER_FIELD_INTERACTIVE_STATE *pcpfis);
	HRESULT(STDMETHODCALLTYPE *GetStringValue)(ICredentialProviderCredential *This, DWORD dwFieldID, LPWSTR *ppsz);
	HRESULT(STDMETHODCALLTYPE *GetBitmapValue)(ICredentialProviderCredential *This, DWORD dwFieldID, HBITMAP *phbmp);
	HRESULT(STDMETHODCALLTYPE *GetCheckboxValue)(ICredentialProviderCredential *This, DWORD dwFieldID, BOOL *pbChecked,
						      LPWSTR *ppszLabel);
	HRESULT(STDMETHODCALLTYPE *GetSubmitButtonValue)(ICredentialProviderCredential *This, DWORD dwFieldID,
							  DWORD *pdwAdjacentTo);
	HRESULT(STDMETHODCALLTYPE *GetComboBoxValueCount)(ICredentialProviderCredential *This, DWORD dwFieldID,
							   DWORD *pcItems, DWORD *pdwSelectedItem);
	HRESULT(STDMETHODCALLTYPE *GetComboBoxValueAt)(ICredentialProviderCredential *This, DWORD dwFieldID, DWORD dwItem,
							LPWSTR *ppszItem);
	HRESULT(STDMETHODCALLTYPE *SetStringValue)(ICredentialProviderCredential *This, DWORD dwFieldID, LPCWSTR psz);
	HRESULT(STDMETHODCALLTYPE *SetCheckboxValue)(ICredentialProviderCredential *This, DWORD dwFieldID, BOOL bChecked);
	HRESULT(STDMETHODCALLTYPE *SetComboBoxSelectedValue)(ICredentialProviderCredential *This, DWORD dwFieldID,
							      DWORD dwSelectedItem);
	HRESULT(STDMETHODCALLTYPE *CommandLinkClicked)(ICredentialProviderCredential *This, DWORD dwFieldID);
	HRESULT(STDMETHODCALLTYPE *GetSerialization)(ICredentialProviderCredential *This,
						      CREDENTIAL_PROVIDER_GET_SERIALIZATION_RESPONSE *pcpgsr,
						      CREDENTIAL_PROVIDER_CREDENTIAL_SERIALIZATION *pcpcs,
						      LPWSTR *ppszOptionalStatusText,
						      CREDENTIAL_PROVIDER_STATUS_ICON *pcpsiOptionalStatusIcon);
	HRESULT(STDMETHODCALLTYPE *ReportResult)(ICredentialProviderCredential *This, CP_NTSTATUS ntsStatus,
						  CP_NTSTATUS ntsSubstatus, LPWSTR *ppszOptionalStatusText,
						  CREDENTIAL_PROVIDER_STATUS_ICON *pcpsiOptionalStatusIcon);
} ICredentialProviderCredentialVtbl;

struct ICredentialProviderCredential {
	const ICredentialProviderCredentialVtbl *lpVtbl;
};

/* ---- ICredentialProviderCredentialEvents (implemented by LogonUI) ---- */

typedef struct ICredentialProviderCredentialEventsVtbl {
	HRESULT(STDMETHODCALLTYPE *QueryInterface)(ICredentialProviderCredentialEvents *This, REFIID riid, void **ppv);
	ULONG(STDMETHODCALLTYPE *AddRef)(ICredentialProviderCredentialEvents *This);
	ULONG(STDMETHODCALLTYPE *Release)(ICredentialProviderCredentialEvents *This);
	HRESULT(STDMETHODCALLTYPE *SetFieldState)(ICredentialProviderCredentialEvents *This,
						   ICredentialProviderCredential *pcpc, DWORD dwFieldID,
						   CREDENTIAL_PROVIDER_FIELD_STATE cpfs);
	HRESULT(STDMETHODCALLTYPE *SetFieldInteractiveState)(ICredentialProviderCredentialEvents *This,
							      ICredentialProviderCredential *pcpc, DWORD dwFieldID,
							      CREDENTIAL_PROVIDER_FIELD_INTERACTIVE_STATE cpfis);
	HRESULT(STDMETHODCALLTYPE *SetFieldString)(ICredentialProviderCredentialEvents *This,
						    ICredentialProviderCredential *pcpc, DWORD dwFieldID, LPCWSTR psz);
	HRESULT(STDMETHODCALLTYPE *SetFieldCheckbox)(ICredentialProviderCredentialEvents *This,
						      ICredentialProviderCredential *pcpc, DWORD dwFieldID, BOOL bChecked,
						      LPCWSTR pszLabel);
	HRESULT(STDMETHODCALLTYPE *SetFieldBitmap)(ICredentialProviderCredentialEvents *This,
						    ICredentialProviderCredential *pcpc, DWORD dwFieldID, HBITMAP hbmp);
	HRESULT(STDMETHODCALLTYPE *SetFieldComboBoxSelectedItem)(ICredentialProviderCredentialEvents *This,
								  ICredentialProviderCredential *pcpc, DWORD dwFieldID,
								  DWORD dwSelectedItem);
	HRESULT(STDMETHODCALLTYPE *DeleteFieldComboBoxItem)(ICredentialProviderCredentialEvents *This,
							     ICredentialProviderCredential *pcpc, DWORD dwFieldID,
							     DWORD dwItem);
	HRESULT(STDMETHODCALLTYPE *AppendFieldComboBoxItem)(ICredentialProviderCredentialEvents *This,
							     ICredentialProviderCredential *pcpc, DWORD dwFieldID,
							     LPCWSTR pszItem);
	HRESULT(STDMETHODCALLTYPE *SetFieldSubmitButton)(ICredentialProviderCredentialEvents *This,
							  ICredentialProviderCredential *pcpc, DWORD dwFieldID,
							  DWORD dwAdjacentTo);
	HRESULT(STDMETHODCALLTYPE *OnCreatingWindow)(ICredentialProviderCredentialEvents *This, HWND *phwndOwner);
} ICredentialProviderCredentialEventsVtbl;

struct ICredentialProviderCredentialEvents {
	const ICredentialProviderCredentialEventsVtbl *lpVtbl;
};

/* ---- ICredentialProvider ---- */

typedef struct ICredentialProviderVtbl {
	HRESULT(STDMETHODCALLTYPE *QueryInterface)(ICredentialProvider *This, REFIID riid, void **ppv);
	ULONG(STDMETHODCALLTYPE *AddRef)(ICredentialProvider *This);
	ULONG(STDMETHODCALLTYPE *Release)(ICredentialProvider *This);
	HRESULT(STDMETHODCALLTYPE *SetUsageScenario)(ICredentialProvider *This, CREDENTIAL_PROVIDER_USAGE_SCENARIO cpus,
						      DWORD dwFlags);
	HRESULT(STDMETHODCALLTYPE *SetSerialization)(ICredentialProvider *This,
						      const CREDENTIAL_PROVIDER_CREDENTIAL_SERIALIZATION *pcpcs);
	HRESULT(STDMETHODCALLTYPE *Advise)(ICredentialProvider *This, ICredentialProviderEvents *pcpe,
					    UINT_PTR upAdviseContext);
	HRESULT(STDMETHODCALLTYPE *UnAdvise)(ICredentialProvider *This);
	HRESULT(STDMETHODCALLTYPE *GetFieldDescriptorCount)(ICredentialProvider *This, DWORD *pdwCount);
	HRESULT(STDMETHODCALLTYPE *GetFieldDescriptorAt)(ICredentialProvider *This, DWORD dwIndex,
							  CREDENTIAL_PROVIDER_FIELD_DESCRIPTOR **ppcpfd);
	HRESULT(STDMETHODCALLTYPE *GetCredentialCount)(ICredentialProvider *This, DWORD *pdwCount, DWORD *pdwDefault,
							BOOL *pbAutoLogonWithDefault);
	HRESULT(STDMETHODCALLTYPE *GetCredentialAt)(ICredentialProvider *This, DWORD dwIndex,
						     ICredentialProviderCredential **ppcpc);
} ICredentialProviderVtbl;

struct ICredentialProvider {
	const ICredentialProviderVtbl *lpVtbl;
};

/* ---- ICredentialProviderEvents (implemented by LogonUI) ---- */

typedef struct ICredentialProviderEventsVtbl {
	HRESULT(STDMETHODCALLTYPE *QueryInterface)(ICredentialProviderEvents *This, REFIID riid, void **ppv);
	ULONG(STDMETHODCALLTYPE *AddRef)(ICredentialProviderEvents *This);
	ULONG(STDMETHODCALLTYPE *Release)(ICredentialProviderEvents *This);
	HRESULT(STDMETHODCALLTYPE *CredentialsChanged)(ICredentialProviderEvents *This, UINT_PTR upAdviseContext);
} ICredentialProviderEventsVtbl;

struct ICredentialProviderEvents {
	const ICredentialProviderEventsVtbl *lpVtbl;
};

/* ---- ICredentialProviderFilter ---- */

typedef struct ICredentialProviderFilterVtbl {
	HRESULT(STDMETHODCALLTYPE *QueryInterface)(ICredentialProviderFilter *This, REFIID riid, void **ppv);
	ULONG(STDMETHODCALLTYPE *AddRef)(ICredentialProviderFilter *This);
	ULONG(STDMETHODCALLTYPE *Release)(ICredentialProviderFilter *This);
	HRESULT(STDMETHODCALLTYPE *Filter)(ICredentialProviderFilter *This, CREDENTIAL_PROVIDER_USAGE_SCENARIO cpus,
					    DWORD dwFlags, GUID *rgclsidProviders, BOOL *rgbAllow, DWORD cProviders);
	HRESULT(STDMETHODCALLTYPE *UpdateRemoteCredential)(ICredentialProviderFilter *This,
							    const CREDENTIAL_PROVIDER_CREDENTIAL_SERIALIZATION *pcpcsIn,
							    CREDENTIAL_PROVIDER_CREDENTIAL_SERIALIZATION *pcpcsOut);
} ICredentialProviderFilterVtbl;

struct ICredentialProviderFilter {
	const ICredentialProviderFilterVtbl *lpVtbl;
};

/* ---- IIDs and CLSIDs (one form, MAMORI_GUID, so the layout test can read them) ---- */

#define MAMORI_GUID(name, l, w1, w2, b1, b2, b3, b4, b5, b6, b7, b8) \
	static const GUID name = {l, w1, w2, {b1, b2, b3, b4, b5, b6, b7, b8}}

/* From the SDK. */
MAMORI_GUID(MAMORI_IID_ICredentialProvider, 0xd27c3481, 0x5a1c, 0x45b2, 0x8a, 0xaa, 0xc2, 0x0e, 0xbb, 0xe8, 0x22, 0x9e);
MAMORI_GUID(MAMORI_IID_ICredentialProviderCredential, 0x63913a93, 0x40c1, 0x481a, 0x81, 0x8d, 0x40, 0x72, 0xff, 0x8c, 0x70, 0xcc);
MAMORI_GUID(MAMORI_IID_ICredentialProviderCredentialEvents, 0xfa6fa76b, 0x66b7, 0x4b11, 0x95, 0xf1, 0x86, 0x17, 0x11, 0x18, 0xe8, 0x16);
MAMORI_GUID(MAMORI_IID_ICredentialProviderEvents, 0x34201e5a, 0xa787, 0x41a3, 0xa5, 0xa4, 0xbd, 0x6d, 0xcf, 0x2a, 0x85, 0x4e);
MAMORI_GUID(MAMORI_IID_ICredentialProviderFilter, 0xa5da53f9, 0xd475, 0x4080, 0xa1, 0x20, 0x91, 0x0c, 0x4a, 0x73, 0x98, 0x80);

/* mamori's own: the provider and the filter (both in mamori-cp.dll).
 * agent/loginmfa (credprov.go) registers these; change both or neither. */
MAMORI_GUID(MAMORI_CLSID_Provider, 0x5b1f6e0a, 0x3c2d, 0x4e7b, 0x9a, 0x41, 0x6d, 0x2e, 0x8f, 0x10, 0xb3, 0x57);
MAMORI_GUID(MAMORI_CLSID_Filter, 0x5b1f6e0b, 0x3c2d, 0x4e7b, 0x9a, 0x41, 0x6d, 0x2e, 0x8f, 0x10, 0xb3, 0x57);

#endif /* MAMORI_CPDEFS_H */
