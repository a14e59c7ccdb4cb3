package i18n

// serverMessages are mamori-server's texts (server/cmd/mamori-server). IDs
// start with "server.".
var serverMessages = []Message{
	{"server.usage",
		"usage:\n  mamori-server serve --data DIR [--db postgres://…] [--listen :8443] [--host NAME]...\n  mamori-server operator create --data DIR --name NAME --role helpdesk|officer|admin\n  mamori-server version",
		"使い方:\n  mamori-server serve --data DIR [--db postgres://…] [--listen :8443] [--host 名前]...\n  mamori-server operator create --data DIR --name 名前 --role helpdesk|officer|admin\n  mamori-server version"},
	{"server.operator-usage", "operator create needs --name and --role (helpdesk, officer or admin)", "operator create には --name と --role（helpdesk、officer、admin のいずれか）が必要です"},
	{"server.start-failed", "mamori-server: %v", "mamori-server: %v"},
	{"server.ca-created", "created a new certificate authority in %s: back up ca-key.pem", "%s に新しい認証局を作成しました。ca-key.pem をバックアップしてください"},
	{"server.ca-fingerprint", "CA fingerprint (SHA-256), for installers and --ca-fingerprint: %s", "CA フィンガープリント（SHA-256、インストーラーと --ca-fingerprint 用）: %s"},
	{"server.admin-token", "first admin operator token (shown once, keep it safe): %s", "最初の管理者（admin）オペレーターのトークン（この一度だけ表示されます。安全に保管してください）: %s"},
	{"server.admin-token-file", "first admin operator token written to %s (mode 0600)", "最初の管理者（admin）オペレーターのトークンを %s に書き込みました（モード 0600）"},
	{"server.listening", "listening on %s", "%s で待ち受けています"},
	{"server.operator-created-console", "operator %s (role %v) created for the console only: no API token (add --api-token for mamorictl)", "オペレーター %s（ロール %v）をコンソール専用で作成しました。API トークンはありません（mamorictl を使う場合は --api-token を付けてください）"},
	{"server.operator-created", "operator %s (role %v) created; API token (shown once): %s", "オペレーター %s（ロール %v）を作成しました。API トークン（この一度だけ表示されます）: %s"},
}
