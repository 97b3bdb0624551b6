//! Client-side errors and their mapping to exit codes and stderr text.
//!
//! Exit codes: 0 success; 1 the API refused the request, a command-line/usage problem, or a local
//! failure (e.g. the tiny-guest build); 2 the server could not be reached (connect error, timeout,
//! broken connection). Scripts can therefore retry on 2 and give up on 1.

use kumo_types::ErrorBody;

#[derive(Debug)]
pub enum CliError {
    /// The API answered with an error status and (usually) an [`ErrorBody`].
    Api { status: u16, body: ErrorBody },
    /// The server could not be reached or the connection broke.
    Connect { url: String, message: String },
    /// Bad usage or configuration detected by the client itself.
    Usage(String),
    /// A local failure (reading a file, building the tiny guest, decoding a response…).
    Other(anyhow::Error),
}

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CliError::Api { status, body } => {
                write!(f, "{} (HTTP {status}): {}", body.code, body.message)?;
                if let Some(field) = &body.field {
                    write!(f, " [field: {field}]")?;
                }
                Ok(())
            }
            CliError::Connect { url, message } => {
                write!(f, "cannot reach the kumo API at {url}: {message}")
            }
            CliError::Usage(m) => write!(f, "{m}"),
            CliError::Other(e) => write!(f, "{e:#}"),
        }
    }
}

impl std::error::Error for CliError {}

impl CliError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            CliError::Connect { .. } => 2,
            CliError::Api { .. } | CliError::Usage(_) | CliError::Other(_) => 1,
        }
    }

    /// The machine-readable body printed with `--json` (API errors keep the server's body verbatim).
    pub fn body(&self) -> ErrorBody {
        match self {
            CliError::Api { body, .. } => body.clone(),
            CliError::Connect { .. } => ErrorBody {
                code: "unreachable".into(),
                message: self.to_string(),
                field: None,
            },
            CliError::Usage(m) => ErrorBody {
                code: "usage".into(),
                message: m.clone(),
                field: None,
            },
            CliError::Other(e) => ErrorBody {
                code: "client_error".into(),
                message: format!("{e:#}"),
                field: None,
            },
        }
    }

    /// The API's error code, if this is an API error.
    pub fn api_code(&self) -> Option<&str> {
        match self {
            CliError::Api { body, .. } => Some(&body.code),
            _ => None,
        }
    }

    pub fn usage(m: impl Into<String>) -> Self {
        CliError::Usage(m.into())
    }
}

impl From<anyhow::Error> for CliError {
    fn from(e: anyhow::Error) -> Self {
        CliError::Other(e)
    }
}

/// The text written to stderr for an error: `error: …` for humans, the JSON body with `--json`.
pub fn render(e: &CliError, json: bool) -> String {
    if json {
        serde_json::to_string(&e.body()).unwrap_or_else(|_| format!("error: {e}"))
    } else {
        format!("error: {e}")
    }
}

/// Print the error on stderr.
pub fn report(e: &CliError, json: bool) {
    eprintln!("{}", render(e, json));
}
