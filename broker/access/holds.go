package access

// HoldFacts are the facts about user and a statement held in a session of
// sessionUser on target/role.
func (s *Service) HoldFacts(user, sessionUser, target, role string) Facts {
	return Facts{Security: s.isSecurityAdmin(user), Owner: sessionUser == user, Approver: s.isApprover(user, target, role)}
}
