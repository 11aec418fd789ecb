package web

import (
	"context"
	"net/http"
	"strconv"

	"github.com/custos-pam/custos/broker/review"
)

// reviews runs access reviews; *review.Service implements it. The
// service decides who may see and do what (through the access rules).
type reviews interface {
	Status(ctx context.Context, actor string) (review.Status, error)
	List(ctx context.Context, actor string) ([]review.Summary, error)
	Start(ctx context.Context, actor, name string) (review.Review, error)
	Get(ctx context.Context, actor, id string) (review.Review, error)
	Export(ctx context.Context, actor, id string) (review.Export, error)
	Mark(ctx context.Context, actor, id string, n int, verdict, comment string) (review.Line, error)
	Attest(ctx context.Context, actor, id, meaning string, in review.SignatureInput) (review.Review, error)
}

// registerReviews adds the access review routes.
func (a *API) registerReviews(auth func(string, http.HandlerFunc)) {
	rv := func(pattern string, h http.HandlerFunc) {
		auth(pattern, func(w http.ResponseWriter, r *http.Request) {
			if a.o.Reviews == nil {
				unavailable(w, "not_configured", "access reviews are not served by this broker")
				return
			}
			h(w, r)
		})
	}
	rv("GET /api/v1/reviews", a.listReviews)
	rv("POST /api/v1/reviews", a.startReview)
	rv("GET /api/v1/reviews/{id}", a.getReview)
	rv("GET /api/v1/reviews/{id}/export", a.exportReview)
	rv("POST /api/v1/reviews/{id}/lines/{n}", a.markReviewLine)
	rv("POST /api/v1/reviews/{id}/attest", a.attestReview)
}

// mayReview reports whether user may see access reviews (the web UI
// shows its page then).
func (a *API) mayReview(ctx context.Context, user string) bool {
	if a.o.Reviews == nil {
		return false
	}
	_, err := a.o.Reviews.Status(ctx, user)
	return err == nil
}

// reviewList is GET /api/v1/reviews.
type reviewList struct {
	Status  review.Status    `json:"status"`
	Reviews []review.Summary `json:"reviews"`
}

func (a *API) listReviews(w http.ResponseWriter, r *http.Request) {
	p := principal(r)
	st, err := a.o.Reviews.Status(r.Context(), p.User)
	if err != nil {
		a.Fail(w, err)
		return
	}
	list, err := a.o.Reviews.List(r.Context(), p.User)
	if err != nil {
		a.Fail(w, err)
		return
	}
	WriteJSON(w, http.StatusOK, reviewList{Status: st, Reviews: list})
}

func (a *API) startReview(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Name string `json:"name"`
	}
	if !decodeOptional(w, r, &in) {
		return
	}
	rev, err := a.o.Reviews.Start(r.Context(), principal(r).User, in.Name)
	if err != nil {
		a.Fail(w, err)
		return
	}
	WriteJSON(w, http.StatusCreated, rev)
}

func (a *API) getReview(w http.ResponseWriter, r *http.Request) {
	rev, err := a.o.Reviews.Get(r.Context(), principal(r).User, r.PathValue("id"))
	if err != nil {
		a.Fail(w, err)
		return
	}
	WriteJSON(w, http.StatusOK, rev)
}

func (a *API) exportReview(w http.ResponseWriter, r *http.Request) {
	ex, err := a.o.Reviews.Export(r.Context(), principal(r).User, r.PathValue("id"))
	if err != nil {
		a.Fail(w, err)
		return
	}
	w.Header().Set("Content-Disposition", `attachment; filename="review-`+ex.Review.ID+`.json"`)
	WriteJSON(w, http.StatusOK, ex)
}

func (a *API) markReviewLine(w http.ResponseWriter, r *http.Request) {
	n, err := strconv.Atoi(r.PathValue("n"))
	if err != nil {
		WriteError(w, http.StatusBadRequest, "bad_request", "the line is a number")
		return
	}
	var in struct {
		Verdict string `json:"verdict"`
		Comment string `json:"comment"`
	}
	if err := DecodeJSON(r, &in); err != nil {
		WriteError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	l, err := a.o.Reviews.Mark(r.Context(), principal(r).User, r.PathValue("id"), n, in.Verdict, in.Comment)
	if err != nil {
		a.Fail(w, err)
		return
	}
	WriteJSON(w, http.StatusOK, l)
}

func (a *API) attestReview(w http.ResponseWriter, r *http.Request) {
	var in struct {
		factorBody
		Meaning string `json:"meaning"`
	}
	if err := DecodeJSON(r, &in); err != nil {
		WriteError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	rev, err := a.o.Reviews.Attest(r.Context(), principal(r).User, r.PathValue("id"), in.Meaning,
		review.SignatureInput{Password: in.Password, TOTP: in.TOTP, Passkey: in.Passkey, Source: ClientIP(r)})
	if err != nil {
		a.Fail(w, err)
		return
	}
	WriteJSON(w, http.StatusOK, rev)
}
