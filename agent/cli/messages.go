// Package cli holds what mamori-agent's command line says to people: the
// help text and messages, each in English and Japanese, and the parsing of
// subcommands and flags. main wires it to the rest of the agent.
//
// The catalog is local until internal/i18n is settled; every entry has the
// same shape as an i18n.Message (ID, En, Ja), so it moves there unchanged.
package cli

import (
	"fmt"
	"strings"
)

// Lang is the language of the messages.
type Lang int

// The languages; English is the fallback.
const (
	English Lang = iota
	Japanese
)

// LangFromEnv is Japanese when the first non-empty of LC_ALL, LC_MESSAGES
// and LANG starts with "ja"; English otherwise.
func LangFromEnv(getenv func(string) string) Lang {
	for _, k := range []string{"LC_ALL", "LC_MESSAGES", "LANG"} {
		if v := strings.TrimSpace(getenv(k)); v != "" {
			if strings.HasPrefix(strings.ToLower(v), "ja") {
				return Japanese
			}
			return English
		}
	}
	return English
}

// ID names a message.
type ID string

// Message is one text in both languages; both take the same fmt verbs.
type Message struct {
	ID ID
	En string
	Ja string
}

// Message IDs.
const (
	MsgUsage          ID = "agent.usage"
	MsgUnknownCommand ID = "agent.err.unknown-command"
	MsgBadFlags       ID = "agent.err.flags"
	MsgConfig         ID = "agent.err.config"
	MsgEnrolled       ID = "agent.enrolled"
	MsgEnrollFailed   ID = "agent.err.enroll"
	MsgStatus         ID = "agent.status"
	MsgStatusRunning  ID = "agent.status.running"
	MsgStatusStopped  ID = "agent.status.stopped"
	MsgStatusUnknown  ID = "agent.status.unknown"
	MsgNotInstalled   ID = "agent.status.not-installed"
	MsgServiceDone    ID = "agent.service.done"
	MsgServiceFailed  ID = "agent.err.service"
	MsgRunFailed      ID = "agent.err.run"
	MsgEnrolledAs     ID = "agent.status.device"
	MsgNotEnrolled    ID = "agent.status.not-enrolled"
)

// messages is the catalog. It is a function so no package variable can be
// changed.
func messages() []Message {
	return []Message{
		{MsgUsage, `mamori-agent — keeps this terminal's security controls in force and reports them.

Usage:
  mamori-agent <command> [flags]

Commands:
  run         run in the foreground (Ctrl-C stops)
  enroll      enrol this terminal: --server HOST:PORT --token TOKEN --ca-fingerprint SHA256
  install     install the system service
  uninstall   remove the system service
  start       start the system service
  stop        stop the system service
  status      show the service and enrolment state
  version     print the version

Flags:
  --config PATH      config file (default %[1]s)
  --state-dir DIR    state directory (default %[2]s)

Enrolment values may also come from MAMORI_SERVER, MAMORI_TOKEN and
MAMORI_CA_FINGERPRINT or the config file; flags win over the environment,
the environment over the file.
`, `mamori-agent — この端末のセキュリティ対策を維持し、その状態を報告します。

使い方:
  mamori-agent <コマンド> [フラグ]

コマンド:
  run         フォアグラウンドで実行します (Ctrl-C で停止)
  enroll      この端末を登録します: --server ホスト:ポート --token トークン --ca-fingerprint SHA256
  install     システムサービスとして登録します
  uninstall   システムサービスを削除します
  start       サービスを開始します
  stop        サービスを停止します
  status      サービスと登録の状態を表示します
  version     バージョンを表示します

フラグ:
  --config パス        設定ファイル (既定値 %[1]s)
  --state-dir ディレクトリ  状態ディレクトリ (既定値 %[2]s)

登録に使う値は環境変数 MAMORI_SERVER、MAMORI_TOKEN、MAMORI_CA_FINGERPRINT
または設定ファイルでも指定できます。優先順位はフラグ、環境変数、設定ファイルの順です。
`},
		{MsgUnknownCommand, "unknown command %q: run mamori-agent help", "不明なコマンドです: %q (mamori-agent help を実行してください)"},
		{MsgBadFlags, "%v: run mamori-agent help", "フラグが正しくありません: %v (mamori-agent help を実行してください)"},
		{MsgConfig, "configuration problem: %v", "設定に問題があります: %v"},
		{MsgEnrolled, "enrolled: device %s at %s (policy version %d)", "登録しました: 端末 ID %s、サーバー %s (ポリシー版 %d)"},
		{MsgEnrollFailed, "enrolment failed: %v", "登録できませんでした: %v"},
		{MsgStatus, "service: %s", "サービス: %s"},
		{MsgStatusRunning, "running", "実行中"},
		{MsgStatusStopped, "stopped", "停止中"},
		{MsgStatusUnknown, "unknown", "不明"},
		{MsgNotInstalled, "not installed (run: mamori-agent install)", "未登録です (mamori-agent install を実行してください)"},
		{MsgServiceDone, "%s: done", "%s: 完了しました"},
		{MsgServiceFailed, "%s failed: %v (run as root/Administrator)", "%s に失敗しました: %v (root または管理者として実行してください)"},
		{MsgRunFailed, "the agent stopped with an error: %v", "エージェントがエラーで停止しました: %v"},
		{MsgEnrolledAs, "enrolled as device %s, servers %s", "登録済み: 端末 ID %s、サーバー %s"},
		{MsgNotEnrolled, "not enrolled (%v)", "未登録です (%v)"},
	}
}

// Printer prints messages in one language.
type Printer struct {
	lang Lang
	byID map[ID]Message
}

// NewPrinter returns a printer for lang.
func NewPrinter(lang Lang) *Printer {
	m := map[ID]Message{}
	for _, msg := range messages() {
		m[msg.ID] = msg
	}
	return &Printer{lang: lang, byID: m}
}

// Sprintf formats message id. An unknown ID prints itself, so a missing
// message is visible rather than silent.
func (p *Printer) Sprintf(id ID, args ...any) string {
	m, ok := p.byID[id]
	if !ok {
		return string(id)
	}
	f := m.En
	if p.lang == Japanese {
		f = m.Ja
	}
	return fmt.Sprintf(f, args...)
}
