package i18n

// serverMessages are mamori-server's texts (server/cmd/mamori-server). IDs
// start with "server.".
var serverMessages = []Message{
	{"server.usage",
		"usage:\n  mamori-server serve --data DIR [--db postgres://…] [--listen :8443] [--admin-listen :8445] [--host NAME]...\n  mamori-server operator create --data DIR --name NAME --role helpdesk|officer|admin [--password-file F] [--api-token TOKEN-NAME]\n  mamori-server operator token --data DIR --operator NAME --name TOKEN-NAME [--expires 720h]\n  mamori-server version",
		"使い方:\n  mamori-server serve --data DIR [--db postgres://…] [--listen :8443] [--admin-listen :8445] [--host 名前]...\n  mamori-server operator create --data DIR --name 名前 --role helpdesk|officer|admin [--password-file F] [--api-token トークン名]\n  mamori-server operator token --data DIR --operator 名前 --name トークン名 [--expires 720h]\n  mamori-server version"},
	{"server.operator-usage", "operator create needs --name, --role (helpdesk, officer or admin) and --password-file (console), --api-token TOKEN-NAME (mamorictl) or both", "operator create には --name、--role（helpdesk、officer、admin のいずれか）、および --password-file（コンソール）か --api-token トークン名（mamorictl）またはその両方が必要です"},
	{"server.operator-token-usage", "operator token needs --operator (name or ID) and --name (the token's name)", "operator token には --operator（名前または ID）と --name（トークン名）が必要です"},
	{"server.operator-token-created", "API token %s for operator %s, expires %s (shown once): %s", "オペレーター %[2]s の API トークン %[1]s（有効期限 %[3]s、この一度だけ表示されます）: %[4]s"},
	{"server.admin.listening", "admin API (mamorictl) listening on %s", "管理 API（mamorictl）は %s で待ち受けています"},
	{"server.start-failed", "mamori-server: %v", "mamori-server: %v"},
	{"server.ca-created", "created a new certificate authority in %s: back up ca-key.pem", "%s に新しい認証局を作成しました。ca-key.pem をバックアップしてください"},
	{"server.ca-fingerprint", "CA fingerprint (SHA-256), for installers and --ca-fingerprint: %s", "CA フィンガープリント（SHA-256、インストーラーと --ca-fingerprint 用）: %s"},
	{"server.admin-token", "first admin's bootstrap token (shown once; single use within 24 h: exchange it for your own with mamorictl api-token create --name NAME): %s", "最初の管理者（admin）の初期トークン（この一度だけ表示されます。24 時間以内に一度だけ使えます。mamorictl api-token create --name 名前 で自分のトークンに交換してください）: %s"},
	{"server.admin-token-file", "first admin's bootstrap token written to %s (mode 0600; single use within 24 h: exchange it with mamorictl api-token create --name NAME)", "最初の管理者（admin）の初期トークンを %s に書き込みました（モード 0600。24 時間以内に一度だけ使えます。mamorictl api-token create --name 名前 で交換してください）"},
	{"server.listening", "listening on %s", "%s で待ち受けています"},
	{"server.operator-created-console", "operator %s (role %v) created for the console only: no API token (add --api-token TOKEN-NAME, or later mamori-server operator token, for mamorictl)", "オペレーター %s（ロール %v）をコンソール専用で作成しました。API トークンはありません（mamorictl を使う場合は --api-token トークン名 を付けるか、後で mamori-server operator token を実行してください）"},
	{"server.operator-created", "operator %s (role %v) created; API token (shown once): %s", "オペレーター %s（ロール %v）を作成しました。API トークン（この一度だけ表示されます）: %s"},
}
