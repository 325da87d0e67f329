#pragma once

#include <QMetaType>

// How an engine job ended.
enum class JobOutcome { Finished, Cancelled, Failed };
Q_DECLARE_METATYPE(JobOutcome)
