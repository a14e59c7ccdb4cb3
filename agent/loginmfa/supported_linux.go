package loginmfa

// platformSupported: PAM is where Linux logins are decided.
const platformSupported = true
