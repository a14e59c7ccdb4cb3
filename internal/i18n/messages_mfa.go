package i18n

// mfaCtlMessages are the texts of `mamorictl mfa …` (server/ctl/mfa.go).
var mfaCtlMessages = []Message{
	{"ctl.summary.mfa-enroll", "enrol a user for TOTP (QR code, recovery codes)", "ユーザーを TOTP に登録（QR コード・回復コード）"},
	{"ctl.summary.mfa-import", "import hardware-token seeds from CSV", "ハードウェアトークンのシードを CSV から取り込む"},
	{"ctl.summary.mfa-reset", "delete a user's second factors", "ユーザーの第二要素を削除"},
	{"ctl.summary.mfa-unlock", "clear a user's lock-out", "ユーザーのロックアウトを解除"},
	{"ctl.summary.mfa-temp-code", "issue a one-time temporary code", "1 回限りの一時コードを発行"},
	{"ctl.summary.mfa-list", "list users and their factors", "ユーザーと第二要素の一覧"},

	{"ctl.help.mfa-enroll", "Usage: mamorictl mfa enroll USER [--method totp] [--replace] [-o json]\n\nMakes a TOTP secret for USER (role officer) and shows it once: as a QR code to scan with an authenticator app, as an otpauth:// URI, and with 10 one-time recovery codes to hand over on paper. Terminals receive it with their next report. --replace gives an enrolled user a new secret; the old one stops working.", "使い方: mamorictl mfa enroll ユーザー [--method totp] [--replace] [-o json]\n\nユーザーの TOTP シークレットを作り（officer 権限）、一度だけ表示します。認証アプリで読み取る QR コード、otpauth:// URI、紙で渡す 1 回限りの回復コード 10 個です。各端末には次回の報告で届きます。--replace は登録済みのユーザーに新しいシークレットを発行し、古いものは使えなくなります。"},
	{"ctl.help.mfa-import", "Usage: mamorictl mfa import FILE|- [--replace] [-o json]\n\nEnrols users with hardware TOTP tokens (role officer). FILE is CSV, one token per line: serial,user,base32 seed (a header line is allowed). Every line is checked first; if any is wrong nothing is imported and every wrong line is named.", "使い方: mamorictl mfa import ファイル|- [--replace] [-o json]\n\nハードウェア TOTP トークンでユーザーを登録します（officer 権限）。ファイルは CSV で、1 行に 1 トークン: シリアル,ユーザー,base32 シード（見出し行があっても構いません）。すべての行を先に検査し、1 行でも誤りがあれば何も取り込まず、誤りのある行をすべて示します。"},
	{"ctl.help.mfa-reset", "Usage: mamorictl mfa reset USER [--reason TEXT] [-o json]\n\nDeletes USER's secret, recovery codes and temporary codes (role officer). Terminals drop them at their next report; enrol the user again afterwards.", "使い方: mamorictl mfa reset ユーザー [--reason 理由] [-o json]\n\nユーザーのシークレット・回復コード・一時コードを削除します（officer 権限）。各端末は次回の報告で破棄します。その後、ユーザーを登録し直してください。"},
	{"ctl.help.mfa-unlock", "Usage: mamorictl mfa unlock USER [--device ID] [-o json]\n\nClears USER's lock-out after too many wrong codes, on one device or on every device, at each terminal's next report (role helpdesk).", "使い方: mamorictl mfa unlock ユーザー [--device ID] [-o json]\n\nコードの誤りが続いたユーザーのロックアウトを、1 台の端末またはすべての端末で、各端末の次回の報告時に解除します（helpdesk 権限）。"},
	{"ctl.help.mfa-temp-code", "Usage: mamorictl mfa temp-code USER [--expires 1h] [-o json]\n\nIssues a temporary code USER can log in with once, until it expires (1m to 24h; role helpdesk). It is shown only this once; terminals receive it with their next report.", "使い方: mamorictl mfa temp-code ユーザー [--expires 1h] [-o json]\n\nユーザーが有効期限まで（1m〜24h）1 回だけログインに使える一時コードを発行します（helpdesk 権限）。表示はこの一度だけで、各端末には次回の報告で届きます。"},
	{"ctl.help.mfa-list", "Usage: mamorictl mfa list [-o json]\n\nLists enrolled users: method, when enrolled, hardware token serial, recovery codes left, active temporary codes. Never a secret.", "使い方: mamorictl mfa list [-o json]\n\n登録済みのユーザーを一覧表示します（方式、登録日時、ハードウェアトークンのシリアル、回復コードの残数、有効な一時コード）。シークレットは表示しません。"},

	{"ctl.flag.mfa.method", "second factor to enrol: totp", "登録する第二要素: totp"},
	{"ctl.flag.mfa.replace", "replace an existing enrolment (the old secret stops working)", "既存の登録を置き換える（古いシークレットは使えなくなります）"},
	{"ctl.flag.mfa.import-replace", "replace users who are already enrolled", "登録済みのユーザーを置き換える"},
	{"ctl.flag.mfa.reason", "why (kept in the audit trail)", "理由（監査記録に残ります）"},
	{"ctl.flag.mfa.device", "unlock on this device only (device ID); default every device", "この端末（端末 ID）でのみ解除する。既定はすべての端末"},
	{"ctl.flag.mfa.expires", "how long the code is valid: 15m, 1h, 24h (1m to 24h)", "コードの有効期間。15m、1h、24h など（1m〜24h）"},

	{"ctl.err.mfa-method", "--method %q: only totp is enrolled here (TPM PIN keys are made on the terminal)", "--method %q: ここで登録できるのは totp だけです（TPM PIN 鍵は端末で作成します）"},
	{"ctl.err.temp-ttl-range", "--expires %q: must be between 1m and 24h", "--expires %q: 1m から 24h の範囲で指定してください"},
	{"ctl.err.seed-open", "cannot read seed file %s: %v", "シードファイル %s を読めません: %v"},
	{"ctl.err.seed-dir", "%s is a directory: give the CSV file of token seeds", "%s はディレクトリです。トークンのシードの CSV ファイルを指定してください"},
	{"ctl.err.seed-too-large", "seed file %s is larger than %d MiB: split it", "シードファイル %s が %d MiB を超えています。分割してください"},

	{"ctl.mfa.enroll.heading", "%s is enrolled. Scan the QR code with an authenticator app, or type in the URI below (shown only this once):", "%s を登録しました。認証アプリで QR コードを読み取るか、下の URI を入力してください（表示はこの一度だけです）:"},
	{"ctl.mfa.enroll.no-qr", "(no QR code: the URI is too long for one)", "（URI が長すぎるため QR コードは表示できません）"},
	{"ctl.mfa.enroll.recovery", "Recovery codes, each good for one login (shown only this once; hand them to the user on paper):", "回復コード。それぞれ 1 回だけログインに使えます（表示はこの一度だけです。紙で本人に渡してください）:"},
	{"ctl.mfa.next-report", "Terminals receive this with their next report.", "各端末には次回の報告で届きます。"},
	{"ctl.mfa.import.done", "%d tokens imported.", "%d 個のトークンを取り込みました。"},
	{"ctl.mfa.reset.done", "The second factors of %s are deleted; terminals drop them at their next report.", "%s の第二要素を削除しました。各端末は次回の報告で破棄します。"},
	{"ctl.mfa.reset.next", "Enrol the user again with 'mamorictl mfa enroll %s'.", "'mamorictl mfa enroll %s' でユーザーを登録し直してください。"},
	{"ctl.mfa.unlock.all", "%s will be unlocked on every terminal at its next report.", "%s のロックアウトは、各端末の次回の報告時に解除されます。"},
	{"ctl.mfa.unlock.device", "%s will be unlocked on device %s at its next report.", "%s のロックアウトは、端末 %s の次回の報告時に解除されます。"},
	{"ctl.mfa.temp.heading", "Temporary code for %s, good for one login (shown only this once):", "%s の一時コード。1 回だけログインに使えます（表示はこの一度だけです）:"},
	{"ctl.mfa.temp.expires", "Valid until %s. Terminals receive it with their next report.", "有効期限 %s。各端末には次回の報告で届きます。"},
	{"ctl.mfa.list.none", "no users are enrolled", "登録済みのユーザーはいません"},
	{"ctl.mfa.method.totp", "TOTP app", "TOTP アプリ"},
	{"ctl.mfa.method.totp-hardware", "TOTP token", "TOTP トークン"},
	{"ctl.mfa.method.none", "temporary code only", "一時コードのみ"},

	{"ctl.col.user", "USER", "ユーザー"},
	{"ctl.col.method", "METHOD", "方式"},
	{"ctl.col.enrolled", "ENROLLED", "登録日時"},
	{"ctl.col.token-serial", "TOKEN SERIAL", "トークンのシリアル"},
	{"ctl.col.recovery-left", "RECOVERY CODES", "回復コード残数"},
	{"ctl.col.temp-codes", "TEMP CODES", "一時コード"},
}
